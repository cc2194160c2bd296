"""Tool-call accuracy: the parsed call (name + normalized arguments) must equal the expected one."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from llmops_assets.core.chat import parse_tool_call, tool_calls_of
from llmops_assets.core.tools import ToolCall, ToolSchema


def expected_call(messages: list[dict[str, Any]]) -> ToolCall | None:
    """The first call of the last assistant turn (None for a plain-text answer)."""
    calls = tool_calls_of(messages[-1])
    return calls[0] if calls else None


def score(expected: list[ToolCall | None], answers: list[str], schema: ToolSchema,
          ids: list[str] | None = None) -> dict[str, Any]:
    """Accuracy overall and per tool, valid-JSON rate, and every failing example."""
    ids = ids or [str(i) for i in range(len(answers))]
    per_tool: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0})
    predictions, correct, parsed = [], 0, 0
    for example_id, want, answer in zip(ids, expected, answers, strict=True):
        got = parse_tool_call(answer)
        parsed += got is not None
        match = _same(want, got, schema)
        correct += match
        tool = want.name if want else "text"
        per_tool[tool]["n"] += 1
        per_tool[tool]["correct"] += match
        predictions.append({
            "id": example_id,
            "expected": want.to_json() if want else None,
            "got": got.to_json() if got else None,
            "answer": answer,
            "correct": match,
        })
    n = len(answers)
    return {
        "n": n,
        "task_accuracy": correct / n if n else 0.0,
        "valid_json_rate": parsed / n if n else 0.0,
        "per_tool": {tool: v | {"accuracy": v["correct"] / v["n"]} for tool, v in sorted(per_tool.items())},
        "predictions": predictions,
    }


def _same(want: ToolCall | None, got: ToolCall | None, schema: ToolSchema) -> bool:
    if want is None or got is None:
        return want is None and got is None
    return schema.normalize(want) == schema.normalize(got)
