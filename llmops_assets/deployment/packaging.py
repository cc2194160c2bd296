"""What ships beside the GGUF: an Ollama Modelfile that keeps the chat format, and the agent config.

The Modelfile's TEMPLATE is derived from the model's own chat template by rendering sentinel
messages, so the served prompt matches the trained prompt (a fine-tuned model served with the
wrong template loses its tool-call format).
"""

from __future__ import annotations

import json
from typing import Any

_S, _U, _A = "\x01SYSTEM\x01", "\x01USER\x01", "\x01ASSISTANT\x01"


def chat_markers(tokenizer: Any) -> dict[str, str]:
    """Role prefixes and the turn end, read off the tokenizer's chat template."""
    messages = [{"role": "system", "content": _S}, {"role": "user", "content": _U},
                {"role": "assistant", "content": _A}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    system_prefix, rest = text.split(_S)
    between_system_user, rest = rest.split(_U)
    between_user_assistant, turn_end = rest.split(_A)
    turn_end = turn_end or tokenizer.eos_token
    end = turn_end.rstrip("\n") or turn_end
    if not between_system_user.startswith(end) or not between_user_assistant.startswith(end):
        raise ValueError("the chat template does not close every turn the same way; write the Modelfile by hand")
    strip = len(between_system_user) - len(between_system_user[len(end):].lstrip("\n"))
    return {
        "system_prefix": system_prefix.removeprefix(tokenizer.bos_token or ""),  # the runtime adds BOS itself
        "user_prefix": between_system_user[strip:],
        "assistant_prefix": between_user_assistant[strip:],
        "turn_end": turn_end,
        "stop": end,
    }


def ollama_spec(markers: dict[str, str], system_prompt: str) -> dict[str, Any]:
    """Template, system prompt and parameters for Ollama: the Go TEMPLATE reproduces the HF chat
    template, and generation stops at the model's turn end."""
    def go(text: str) -> str:
        return text.replace("{{", "{{ '{{' }}")

    # No `{{-` trim markers: they would also eat the newlines that belong to the turn markers.
    system, user, assistant, end = (go(markers[k]) for k in ("system_prefix", "user_prefix", "assistant_prefix", "turn_end"))
    template = (
        f"{{{{ if .System }}}}{system}{{{{ .System }}}}{end}{{{{ end }}}}"
        f'{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{user}{{{{ .Content }}}}{end}'
        f'{{{{ else if eq .Role "assistant" }}}}{assistant}{{{{ .Content }}}}{end}{{{{ end }}}}{{{{ end }}}}{assistant}'
    )
    return {"template": template, "system": system_prompt, "parameters": {"stop": [markers["stop"]], "temperature": 0}}


def modelfile(gguf_name: str, spec: dict[str, Any]) -> str:
    """The same spec as an Ollama Modelfile, for `ollama create -f Modelfile` by hand."""
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{spec["template"]}"""', f'SYSTEM """{spec["system"]}"""']
    for name, value in spec["parameters"].items():
        lines += [f"PARAMETER {name} {json.dumps(v)}" for v in (value if isinstance(value, list) else [value])]
    return "\n".join(lines) + "\n"


def agent_config(tools: list[dict[str, Any]], endpoint: str, model: str, version: str,
                 system_prompt: str) -> dict[str, Any]:
    """What an agent needs to call the served model: where, which model, which tools, how to parse."""
    return {
        "endpoint": endpoint,
        "api": "openai-chat-completions",
        "model": model,
        "version": version,
        "system_prompt": system_prompt,
        "tools": tools,
        "response_format": 'one JSON object per tool call: {"name": <tool>, "arguments": {...}}',
    }
