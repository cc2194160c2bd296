"""How an example becomes model text, and how model text becomes a tool call again.

Training, evaluation and the deployment fidelity check all go through these functions, so the
prompt the model learns on is exactly the prompt it is evaluated and served with.
"""

from __future__ import annotations

import json
from typing import Any

from llmops_assets.core.tools import ToolCall


def tool_calls_of(message: dict[str, Any]) -> list[ToolCall]:
    """The calls of a seed-format assistant message (`arguments` is a JSON string or object)."""
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw.get("function", raw)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            arguments = json.loads(arguments) if arguments.strip() else {}
        calls.append(ToolCall(function["name"], arguments))
    return calls


def tool_call_message(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """An assistant turn calling one tool, in the seed's format (`arguments` as JSON text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": name, "arguments": text}}]}


def model_messages(messages: list[dict[str, Any]], system_prompt: str) -> list[dict[str, str]]:
    """Plain role/content chat with our system prompt; an assistant tool call becomes the JSON
    text `{"name": ..., "arguments": {...}}` the model is taught to emit."""
    rendered = [{"role": "system", "content": system_prompt}]
    for message in messages:
        if message["role"] == "system":
            continue
        calls = tool_calls_of(message) if message["role"] == "assistant" else []
        content = "\n".join(c.to_json() for c in calls) if calls else (message.get("content") or "")
        rendered.append({"role": message["role"], "content": content})
    return rendered


def prompt_and_completion(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, str]:
    """Split a rendered conversation at its last assistant turn: the prompt (with the generation
    prompt) and the completion the loss is computed on (answer + turn-end as the template writes it)."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the conversation must end with an assistant turn")
    prompt = render_prompt(tokenizer, messages[:-1])
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    return prompt, full[len(prompt):]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def parse_tool_call(text: str) -> ToolCall | None:
    """The first JSON object in the model's answer that has a string `name`, else None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            arguments = value.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    return None
            return ToolCall(value["name"], arguments if isinstance(arguments, dict) else {})
        return None
    return None


class ChatTokenCounter:
    """Tokens of an example as training sees it (system prompt, chat template, answer), with the
    model's tokenizer. Picklable, so curation's worker processes can count; each loads the
    tokenizer once."""

    def __init__(self, model_dir: str, system_prompt: str):
        self.model_dir, self.system_prompt = model_dir, system_prompt
        self._tokenizer = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_tokenizer": None}  # each process loads its own

    def __call__(self, record: dict[str, Any]) -> int:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        prompt, completion = prompt_and_completion(self._tokenizer, model_messages(record["messages"], self.system_prompt))
        return len(self._tokenizer(prompt + completion, add_special_tokens=False)["input_ids"])
