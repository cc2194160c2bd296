"""Quality filters: well-formed examples that are still not worth training on."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from llmops_assets.data.config import QualityFilterSettings

# Unicode category Cc (C0, DEL, C1) but tab, newline and carriage return: one regex, not a lookup per character.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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
