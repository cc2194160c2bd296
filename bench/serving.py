"""Serving benchmark: the deployed llama.cpp server vs in-process llama.cpp on the same GGUF.

    .venv/bin/python bench/serving.py [--gguf PATH] [--tokens 64] [--repeats 5]

Default GGUF: the one being served (LLMOPS_HOME/deployment_status.json). Prints time to first
token (cold and warm), tokens/s and the server's resident memory, and the server/in-process ratio.
Targets: warm TTFT <= 200 ms for the default model; server throughput >= 0.95x in-process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path

from llmops_assets.core import releases
from llmops_assets.deployment import servers
from llmops_assets.orchestration.resources import ArtifactStoreResource
from llmops_assets.settings import load_settings

PROMPT = "Add task: Buy milk and eggs on the way home"


def in_process(gguf: Path, messages: list[dict], tokens: int, repeats: int, threads: int) -> dict:
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    cold = _stream_ttft(lambda: llm.create_chat_completion(messages, stream=True, max_tokens=8, temperature=0))
    cold += (time.perf_counter() - started) * 1000
    warm = [_stream_ttft(lambda: llm.create_chat_completion(messages, stream=True, max_tokens=8, temperature=0))
            for _ in range(repeats)]
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0)
        rates.append(out["usage"]["completion_tokens"] / (time.perf_counter() - t))
    return {"ttft_cold_ms": cold, "ttft_warm_ms": statistics.median(warm), "tokens_per_s": statistics.median(rates)}


def served(gguf: Path, messages: list[dict], tokens: int, repeats: int, threads: int, home: Path) -> dict:
    started = time.perf_counter()
    handle = servers.start_llamacpp(gguf, "bench", "127.0.0.1", 0, threads, 2048, home / "bench")
    try:
        servers.wait_healthy(handle.endpoint, handle.pid, 120)
        cold = servers.first_token_ms(handle.endpoint, "bench", messages) + (time.perf_counter() - started) * 1000
        warm = [servers.first_token_ms(handle.endpoint, "bench", messages) for _ in range(repeats)]
        rates = []
        for _ in range(repeats):
            body = json.dumps({"prompt": PROMPT, "max_tokens": tokens, "temperature": 0}).encode()
            request = urllib.request.Request(f"{handle.endpoint}/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(request, timeout=300) as response:
                usage = json.load(response)["usage"]
            rates.append(usage["completion_tokens"] / (time.perf_counter() - t))
        rss = servers.resident_memory_bytes(handle.pid)
    finally:
        servers.stop(handle.pid)
    return {"ttft_cold_ms": cold, "ttft_warm_ms": statistics.median(warm), "tokens_per_s": statistics.median(rates),
            "rss_mb": rss / 1e6}


def _stream_ttft(start_stream) -> float:
    t = time.perf_counter()
    for chunk in start_stream():
        if chunk["choices"][0]["delta"].get("content"):
            return (time.perf_counter() - t) * 1000
    raise RuntimeError("no content streamed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings()
    home = ArtifactStoreResource().home_path
    status = releases.read_status(home)
    gguf = args.gguf or (Path(status["model_path"]) if status else None)
    if gguf is None:
        raise SystemExit("nothing is served yet: run `make run` first or pass --gguf")
    messages = [{"role": "system", "content": settings.domain.system_prompt}, {"role": "user", "content": PROMPT}]
    threads = settings.stages.deployment.n_threads
    local = in_process(gguf, messages, args.tokens, args.repeats, threads)
    remote = served(gguf, messages, args.tokens, args.repeats, threads, home)
    print(f"GGUF {gguf} ({gguf.stat().st_size / 1e6:.0f} MB), {threads} thread(s), {args.tokens} tokens, "
          f"median of {args.repeats}")
    print(f"{'':12}{'TTFT cold ms':>14}{'TTFT warm ms':>14}{'tokens/s':>10}{'RSS MB':>9}")
    for name, row in (("in-process", local), ("server", remote)):
        print(f"{name:12}{row['ttft_cold_ms']:14.0f}{row['ttft_warm_ms']:14.1f}{row['tokens_per_s']:10.1f}"
              f"{row.get('rss_mb', float('nan')):9.0f}")
    print(f"server/in-process throughput ratio: {remote['tokens_per_s'] / local['tokens_per_s']:.3f} (target >= 0.95)")
    print(f"server warm TTFT: {remote['ttft_warm_ms']:.1f} ms (target <= 200)")


if __name__ == "__main__":
    main()
