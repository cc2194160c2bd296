"""Automation benchmark on the tiny profile, in a throwaway instance with the real daemon.

    .venv/bin/python bench/automation.py [--config PATH]

1. Latency from dropping a data file into a source folder to the ingest run being created and
   started by the daemon (target <= 10 s).
2. A no-op rerun of the full pipeline (nothing changed: every artifact reused, the server kept)
   against the first full run in the same session (target <= 15 s, zero retraining).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from llmops_assets.core.releases import ReleaseRegistry
from llmops_assets.core.storage import ArtifactStore, write_jsonl
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.deployment import gateway, servers
from llmops_assets.orchestration.sensors import TRIGGER_TAG
from llmops_assets_tests.conftest import TINY_CONFIG, derived_config
from llmops_assets_tests.operations.processes import BIN, dagster_process, instance_env, wait_until
from llmops_assets_tests.operations.test_daemon import new_example


def timed_cli(env: dict, cwd: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"llmops {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=TINY_CONFIG)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-automation-"))
    sources = root / "incoming"
    sources.mkdir()
    shutil.copy(SEED_FILE, sources / "seed.jsonl")
    config = derived_config(root, {"stages": {"data": {"sources": [str(sources)]}}}, base=args.config)
    env = instance_env(root, config)
    try:
        full_s, _ = timed_cli(env, root, "run")
        noop_s, noop = timed_cli(env, root, "run")
        retrained = "step " in noop.stderr and "sft_adapter: inputs and config unchanged" not in noop.stderr
        print(f"full pipeline run: {full_s:.1f} s; no-op rerun: {noop_s:.1f} s "
              f"({noop_s / full_s:.2f}x of the full run; target <= 15 s) retrained: {retrained}")

        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        log = root / "daemon.log"
        with dagster_process([str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")], env, root, log) as daemon:
            time.sleep(15)  # the daemon's first ticks: the folder matches the latest ingest, nothing to launch
            assert not [r for r in instance.get_runs() if r.tags.get(TRIGGER_TAG)], "a run started without new data"
            dropped = time.time()
            write_jsonl(sources / "more.jsonl", [new_example(n) for n in range(40)])
            run = wait_until(lambda: [r for r in instance.get_runs() if r.tags.get(TRIGGER_TAG) == "new data"], 120,
                             "ingest run", daemon, log, every_s=0.1)[0]
            record = wait_until(lambda: instance.get_run_record_by_id(run.run_id).start_time, 120, "run start",
                                daemon, log, every_s=0.1) and instance.get_run_record_by_id(run.run_id)
            print(f"file drop -> run created {record.create_timestamp.timestamp() - dropped:.1f} s, "
                  f"started {record.start_time - dropped:.1f} s (target <= 10 s)")
            wait_until(lambda: instance.get_run_by_id(run.run_id).status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE),
                       300, "ingest run ends", daemon, log)
            wait_until(lambda: instance.get_latest_materialization_event(AssetKey("deployed_model")).timestamp > dropped,
                       600, "automation deploys the new data", daemon, log, every_s=1)
            print(f"file drop -> new model served {time.time() - dropped:.1f} s (through every gate)")
    finally:
        home = root / "llmops"
        gateway.stop(home)
        for release in ReleaseRegistry(ArtifactStore(home / "artifacts", cache_dir=home / "cache")).releases().values():
            if release.pid:
                servers.stop(release.pid)


if __name__ == "__main__":
    main()
