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
        "system_prefix": system_prefix,
        "user_prefix": between_system_user[strip:],
        "assistant_prefix": between_user_assistant[strip:],
        "turn_end": turn_end,
        "stop": end,
    }


def modelfile(gguf_name: str, markers: dict[str, str], system_prompt: str) -> str:
    """An Ollama Modelfile whose Go TEMPLATE reproduces the HF chat template."""
    def go(text: str) -> str:
        return text.replace("{{", "{{ '{{' }}")

    template = (
        f'{{{{- if .System }}}}{go(markers["system_prefix"])}{{{{ .System }}}}{go(markers["turn_end"])}{{{{ end }}}}'
        f'{{{{- range .Messages }}}}{{{{- if eq .Role "user" }}}}{go(markers["user_prefix"])}{{{{ .Content }}}}'
        f'{go(markers["turn_end"])}{{{{- else if eq .Role "assistant" }}}}{go(markers["assistant_prefix"])}'
        f'{{{{ .Content }}}}{go(markers["turn_end"])}{{{{- end }}}}{{{{- end }}}}{go(markers["assistant_prefix"])}'
    )
    return "\n".join([
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        f'SYSTEM """{system_prompt}"""',
        f"PARAMETER stop {json.dumps(markers['stop'])}",
        "PARAMETER temperature 0",
        "",
    ])


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
