"""Format validation of chat examples against the roles the trainer expects and the tool schema."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from llmops_assets.chat import tool_calls_of
from llmops_assets.settings import QualityFilterSettings
from llmops_assets.tools import ToolSchema

_ROLES = {"system", "user", "assistant"}
# Unicode category Cc (C0, DEL, C1) but tab, newline and carriage return: one regex, not a lookup per character.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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


def quality_problems(messages: list[dict[str, Any]], filters: QualityFilterSettings, text: str) -> list[str]:
    """Why a well-formed example is still not worth training on: a near-empty request, an
    oversized example, one word repeated over and over, or control characters (binary debris).
    `text` is the example's `normalized_text`, which sizes and words are measured on."""
    problems = []
    request = " ".join(m.get("content") or "" for m in messages if m.get("role") == "user").strip()
    if len(request) < filters.min_request_chars:
        problems.append(f"request shorter than {filters.min_request_chars} characters")
    if len(text) > filters.max_chars:
        problems.append(f"longer than {filters.max_chars} characters")
    words = text.split()
    if len(words) >= 8:
        word, count = Counter(words).most_common(1)[0]
        if count / len(words) > filters.max_repeated_word_share:
            problems.append(f"'{word}' is {count / len(words):.0%} of the words")
    if not filters.allow_control_chars and any(_CONTROL_CHARACTERS.search(t) for t in _texts(messages)):
        problems.append("contains control characters")
    return [f"quality: {p}" for p in problems]


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    """Contents and tool-call names and argument texts: what a model would be trained to write."""
    texts = [m.get("content") or "" for m in messages]
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            texts += [str(function.get("name", "")), str(function.get("arguments", ""))]
    return texts
