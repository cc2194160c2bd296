"""The tool schema of the domain: which calls exist, their arguments, and what a valid call is.

Data validation, evaluation (argument normalization) and the agent config all read the same
OpenAI-style function list, so a tool added to the schema file is known everywhere at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


@dataclass(frozen=True)
class ToolCall:
    """One call as the model should emit it: `{"name": ..., "arguments": {...}}`."""

    name: str
    arguments: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)


class ToolSchema:
    """Validates and normalizes tool calls against a list of function definitions."""

    def __init__(self, functions: list[dict[str, Any]]):
        self.functions = functions
        self._by_name = {f["function"]["name"]: f["function"] for f in functions}

    @classmethod
    def from_file(cls, path: str | Path) -> ToolSchema:
        try:
            functions = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the tool schema: {exc}") from exc
        if not isinstance(functions, list) or not all(
            isinstance(f, dict) and isinstance(f.get("function", {}).get("name"), str)
            for f in functions
        ):
            raise ValueError(f"{path}: expected a list of {{'type': 'function', 'function': {{'name': ...}}}}")
        return cls(functions)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def problems(self, call: ToolCall) -> list[str]:
        """Every reason this call does not fit the schema; empty when it does."""
        spec = self._by_name.get(call.name)
        if spec is None:
            return [f"unknown tool {call.name!r} (known: {', '.join(self.names)})"]
        params = spec.get("parameters", {})
        properties: dict[str, Any] = params.get("properties", {})
        found = []
        for missing in sorted(set(params.get("required", [])) - set(call.arguments)):
            found.append(f"{call.name}: missing required argument {missing!r}")
        for key, value in call.arguments.items():
            prop = properties.get(key)
            if prop is None:
                found.append(f"{call.name}: unexpected argument {key!r}")
                continue
            expected = _JSON_TYPES.get(prop.get("type", ""), (object,))
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                found.append(f"{call.name}: argument {key!r} should be {prop.get('type')}, got {value!r}")
            elif "enum" in prop and value not in prop["enum"]:
                found.append(f"{call.name}: argument {key!r} must be one of {prop['enum']}, got {value!r}")
            elif isinstance(value, str) and not value.strip():
                found.append(f"{call.name}: argument {key!r} is empty")
        return found

    def normalize(self, call: ToolCall) -> ToolCall:
        """Canonical form for exact-match comparison: whitespace collapsed, numeric strings
        coerced where the schema says integer, keys sorted."""
        properties = self._by_name.get(call.name, {}).get("parameters", {}).get("properties", {})
        normalized: dict[str, Any] = {}
        for key in sorted(call.arguments):
            value = call.arguments[key]
            kind = properties.get(key, {}).get("type")
            if isinstance(value, str):
                value = " ".join(value.split())
                if kind == "integer" and value.lstrip("-").isdigit():
                    value = int(value)
            normalized[key] = value
        return ToolCall(call.name, normalized)
