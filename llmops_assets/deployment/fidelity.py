"""Is the GGUF the model we evaluated? Replay the evaluation prompts through llama.cpp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops_assets.core.chat import parse_tool_call
from llmops_assets.core.inference import generate_with_llamacpp
from llmops_assets.core.scoring import score
from llmops_assets.core.tools import ToolSchema
from llmops_assets.core.verdicts import Verdict
from llmops_assets.deployment.config import DeploymentGate


def replay(gguf_path: Path, predictions: list[dict[str, Any]], schema: ToolSchema, stop: str,
           max_tokens: int, n_threads: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Accuracy of the GGUF on the evaluated prompts, and how often its greedy answer equals the
    evaluated model's answer token for token."""
    answers = generate_with_llamacpp(gguf_path, [p["prompt"] for p in predictions], stop, max_tokens, n_threads,
                                     progress)
    expected = [parse_tool_call(p["expected"]) if p["expected"] else p["reference"] for p in predictions]
    result = score(expected, answers, schema, ids=[p["id"] for p in predictions])
    agreement = sum(a.strip() == p["answer"].strip() for a, p in zip(answers, predictions, strict=True))
    return {
        "gguf_task_accuracy": result["task_accuracy"],
        "greedy_agreement": agreement / len(predictions) if predictions else 0.0,
        "n": result["n"],
        "disagreements": [
            {"id": p["id"], "evaluated": p["answer"], "gguf": a}
            for a, p in zip(answers, predictions, strict=True) if a.strip() != p["answer"].strip()
        ],
    }


def fidelity_verdict(fidelity: dict[str, Any], gate: DeploymentGate) -> Verdict:
    """The GGUF is faithful when its tool-call accuracy is at most `max_fidelity_drop` below the
    evaluated model's on the same prompts."""
    drop = fidelity["evaluated_task_accuracy"] - fidelity["gguf_task_accuracy"]
    return Verdict("accuracy_drop", drop, gate.max_fidelity_drop, drop <= gate.max_fidelity_drop)
