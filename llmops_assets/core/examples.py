"""The shape every training example, preference pair and correction must have: chat roles in
the order the trainer expects, and tool calls that match the tool schema."""

from __future__ import annotations

import json
from typing import Any

from llmops_assets.core.chat import model_messages, tool_calls_of
from llmops_assets.core.tools import ToolSchema

_ROLES = {"system", "user", "assistant"}
PAIR_SHAPE = ("an object with 'prompt' (messages ending with the user's), 'chosen' and 'rejected' "
              "(each a list holding one assistant message)")


def format_problems(messages: list[Any], schema: ToolSchema) -> list[str]:
    """Every reason this conversation cannot be trained on; empty when it is valid."""
    if not messages:
        return ["no messages"]
    problems: list[str] = []
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            problems.append(f"message {index}: role must be one of {sorted(_ROLES)}")
    if problems:
        return problems
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            problems.append(f"turn {index}: expected a {expected} message, got {message['role']}")
    if turns and turns[-1]["role"] != "assistant":
        problems.append("the last message must be the assistant's answer")
    for index, message in enumerate(turns):
        problems.extend(f"turn {index}: {p}" for p in _message_problems(message, schema))
    return problems


def _message_problems(message: dict[str, Any], schema: ToolSchema) -> list[str]:
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return [f"{message['role']} content must be a string or null"]
    if message["role"] != "assistant" or not message.get("tool_calls"):
        return [] if content and content.strip() else [f"{message['role']} message has no content"]
    try:
        calls = tool_calls_of(message)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        return [f"tool call does not parse: {exc}"]
    problems = []
    for call in calls:
        if not isinstance(call.arguments, dict):
            problems.append(f"{call.name}: arguments must be a JSON object")
        else:
            problems.extend(schema.problems(call))
    return problems


def pair_problem(row: dict[str, Any], schema: ToolSchema) -> str | None:
    """Why a preference pair cannot be trained on, or None. The chosen answer must be a valid
    example; the rejected one only well-formed (it is wrong on purpose)."""
    prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
    if not (isinstance(prompt, list) and prompt and _one_answer(chosen) and _one_answer(rejected)):
        return f"expected {PAIR_SHAPE}"
    problems = format_problems(prompt + chosen, schema)
    if problems:
        return "chosen: " + "; ".join(problems)
    try:
        rejected_calls = tool_calls_of(rejected[0])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        return f"rejected: tool call does not parse: {exc}"
    if not rejected_calls and not (rejected[0].get("content") or "").strip():
        return "rejected: the assistant message has neither content nor a tool call"
    if model_messages(chosen, "") == model_messages(rejected, ""):
        return "chosen and rejected are the same answer"
    return None


def _one_answer(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "assistant"
