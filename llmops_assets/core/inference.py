"""Inference every stage shares: one client for OpenAI-compatible chat endpoints (llama.cpp's
server, Ollama at /v1, vLLM, OpenAI) that the judge, the serving checks and the synthetic-data
generator speak, and greedy answers from a GGUF file through llama.cpp (evaluation of the
champion, fidelity of an export)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def is_loopback(host_or_url: str) -> bool:
    """`127.0.0.1`, `localhost`, `::1` (bare, host:port, or in a URL): only this machine can reach it."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        return ipaddress.ip_address(host_or_url.strip("[]")).is_loopback  # a bare address, IPv6 included
    except ValueError:
        pass
    host = urlsplit(host_or_url if "//" in host_or_url else f"//{host_or_url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_transport(endpoint: str, api_key: str) -> None:
    """An API key travels only over HTTPS, or to this machine: never in clear text across a network."""
    if api_key and endpoint.startswith("http://") and not is_loopback(endpoint):
        raise ValueError(f"refusing to send an API key over plain HTTP to {endpoint}: use https://, or no key")


def chat_completion(endpoint: str, model: str, messages: list[dict[str, str]], *, max_tokens: int = 64,
                    temperature: float = 0.0, api_key: str = "", response_format: dict[str, Any] | None = None,
                    seed: int | None = None, timeout_s: float = 120) -> str:
    """The assistant's text for one chat request (`endpoint` is the base URL ending in /v1)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
    if response_format is not None:
        body["response_format"] = response_format
    if seed is not None:
        body["seed"] = seed
    check_key_transport(endpoint, api_key)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)["choices"][0]["message"]["content"] or ""


def generate_with_llamacpp(gguf_path: Path, prompts: list[str], stop: str, max_tokens: int, n_threads: int,
                           progress: Callable[[str], None]) -> list[str]:
    """Greedy answers from a GGUF through llama.cpp, prompts tokenized exactly as rendered."""
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), n_ctx=2048, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    answers: list[str] = []
    started = time.monotonic()
    for index, prompt in enumerate(prompts, start=1):
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        answers.append(llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stop=[stop])["choices"][0]["text"])
        if index % 25 == 0 or index == len(prompts):
            elapsed = time.monotonic() - started
            progress(f"llama.cpp answered {index}/{len(prompts)} prompts, ETA {(len(prompts) - index) * elapsed / index:.0f}s")
    return answers
