"""One client for OpenAI-compatible chat endpoints (llama.cpp's server, Ollama at /v1, vLLM,
OpenAI): the judge, the serving checks and the synthetic-data generator all speak it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def chat_completion(endpoint: str, model: str, messages: list[dict[str, str]], *, max_tokens: int = 64,
                    temperature: float = 0.0, api_key: str = "", response_format: dict[str, Any] | None = None,
                    seed: int | None = None, timeout_s: float = 120) -> str:
    """The assistant's text for one chat request (`endpoint` is the base URL ending in /v1)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
    if response_format is not None:
        body["response_format"] = response_format
    if seed is not None:
        body["seed"] = seed
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)["choices"][0]["message"]["content"] or ""
