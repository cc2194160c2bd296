"""Tool-call accuracy: the parsed call (name + normalized arguments) must equal the expected one;
a text answer must be text (no call, whole or broken) and refuse exactly when the reference does."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from llmops_assets.core.chat import parse_tool_call, tool_calls_of
from llmops_assets.core.tools import ToolCall, ToolSchema

# What a refusal or a decline says; a text answer with none of these is not a refusal.
_REFUSAL = re.compile(r"\b(can['’]?t|cannot|can not|won['’]t|will not|unable|not able|sorry|not allowed|"
                      r"not permitted|decline|refuse|can only)\b", re.IGNORECASE)
# JSON that looks like a tool call, whether it parses or not (an OpenAI-style {"function": ...}
# object, a truncated call): never a refusal and never a plain text answer.
_CALL_LIKE = re.compile(r'\{\s*"(?:name|function|tool_calls?|arguments)"\s*:')


def is_plain_text(answer: str) -> bool:
    """A non-empty answer with no tool call in it, parseable or not."""
    return bool(answer.strip()) and not _CALL_LIKE.search(answer) and parse_tool_call(answer) is None


def is_refusal(answer: str) -> bool:
    """Plain text that refuses or declines: an empty, a compliant or a call-like answer is not one."""
    return is_plain_text(answer) and bool(_REFUSAL.search(answer))


def expected_call(messages: list[dict[str, Any]]) -> ToolCall | str:
    """The first call of the last assistant turn, or its text for a plain-text answer."""
    calls = tool_calls_of(messages[-1])
    return calls[0] if calls else (messages[-1].get("content") or "")


def score(expected: list[ToolCall | str], answers: list[str], schema: ToolSchema,
          ids: list[str] | None = None) -> dict[str, Any]:
    """Accuracy overall and per tool, valid-JSON rate, and every failing example."""
    ids = ids or [str(i) for i in range(len(answers))]
    per_tool: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0})
    predictions, correct, parsed = [], 0, 0
    for example_id, want, answer in zip(ids, expected, answers, strict=True):
        got = parse_tool_call(answer)
        parsed += got is not None
        match = _same(want, got, answer, schema)
        correct += match
        tool = want.name if isinstance(want, ToolCall) else "text"
        per_tool[tool]["n"] += 1
        per_tool[tool]["correct"] += match
        predictions.append({
            "id": example_id,
            "expected": want.to_json() if isinstance(want, ToolCall) else None,
            "reference": None if isinstance(want, ToolCall) else want,
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


def _same(want: ToolCall | str, got: ToolCall | None, answer: str, schema: ToolSchema) -> bool:
    if isinstance(want, str):
        return is_plain_text(answer) and is_refusal(answer) == is_refusal(want)
    return got is not None and schema.normalize(want) == schema.normalize(got)
