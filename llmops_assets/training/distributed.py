"""Training on several GPUs of one machine (one pod): a stage's training function run under
torchrun, one process per GPU, the Trainer's DDP across them (NCCL on GPUs, gloo on CPUs). The
step's process starts it, passes its progress lines through and reads back rank 0's outcome.
Beyond one node the plan is dagster-ray on KubeRay (README, "Beyond one machine")."""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path

from llmops_assets.core.costs import BudgetExceeded
from llmops_assets.training.runner import Progress, TrainingOutcome

PROGRESS_PREFIX = "llmops-progress: "


def run_stage(train: Callable[..., TrainingOutcome], nproc_per_node: int, progress: Progress, **arguments) -> TrainingOutcome:
    """`train(**arguments, progress=progress)`, in this process when `nproc_per_node` is 1, else
    under `torchrun --standalone --nproc_per_node N` (rank 0 reports progress and saves)."""
    if nproc_per_node == 1:
        return train(**arguments, progress=progress)
    with tempfile.TemporaryDirectory(prefix="llmops-torchrun-") as folder:
        call, result = Path(folder) / "call.pkl", Path(folder) / "outcome.pkl"
        call.write_bytes(pickle.dumps({"module": train.__module__, "function": train.__name__,
                                       "arguments": arguments, "outcome": str(result), "errors": folder}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
                   "-m", __name__, str(call)]
        progress(f"training on {nproc_per_node} processes: {' '.join(command[2:5])}")
        tail: deque[str] = deque(maxlen=40)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            for line in process.stdout:
                if line.startswith(PROGRESS_PREFIX):
                    progress(line.removeprefix(PROGRESS_PREFIX).rstrip())
                else:
                    tail.append(line.rstrip())
        if process.returncode != 0 or not result.exists():
            if (stopped := Path(folder) / "rank0.budget").exists():  # every rank stopped at the same step
                raise BudgetExceeded(stopped.read_text())
            errors = [f"{path.stem}: {path.read_text()}" for path in sorted(Path(folder).glob("rank*.error"))]
            raise RuntimeError(f"torchrun ({nproc_per_node} processes) exited with {process.returncode}: "
                               + ("; ".join(errors) if errors else "\n" + "\n".join(tail)))
        return pickle.loads(result.read_bytes())


def _main(call_file: str) -> None:
    """One rank: the stage's function with the arguments the step pickled; rank 0 reports."""
    call = pickle.loads(Path(call_file).read_bytes())
    rank = int(os.environ.get("RANK", "0"))
    train = getattr(importlib.import_module(call["module"]), call["function"])
    try:
        outcome = train(**call["arguments"], progress=(lambda message: print(PROGRESS_PREFIX + message, flush=True))
                        if rank == 0 else (lambda _: None))
    except BudgetExceeded as exc:  # not a failure of the rank: the step refuses to spend more
        (Path(call["errors"]) / f"rank{rank}.budget").write_text(str(exc))
        raise
    except Exception as exc:  # the step reports each rank's own error, not torchrun's summary
        (Path(call["errors"]) / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {exc}")
        raise
    if rank == 0:
        Path(call["outcome"]).write_bytes(pickle.dumps(outcome))


if __name__ == "__main__":
    _main(sys.argv[1])
