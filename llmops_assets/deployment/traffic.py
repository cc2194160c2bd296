"""Replaying prompts through the gateway at a set rate: for demos, tests and benchmarks.

Each prompt is a list of chat messages; each result says what the client got back (status,
latency, request id, release, answer), so callers can score answers or compare endpoints.
"""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any


def replay(endpoint: str, conversations: Iterable[list[dict[str, str]]], rate_per_s: float, max_tokens: int = 64,
           api_key: str = "", progress: Callable[[str], None] = lambda message: None,
           users: int = 0) -> list[dict[str, Any]]:
    """POST each conversation to `endpoint`/chat/completions, starting one every 1/rate seconds
    (sequentially: a slow answer delays the next one); 0 sends back to back. `users` > 0: the
    requests come from that many simulated users in turn (each a sticky session for a canary)."""
    results = []
    interval = 1 / rate_per_s if rate_per_s > 0 else 0.0
    started = time.monotonic()
    for number, messages in enumerate(conversations):
        wait = started + number * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        results.append(send(endpoint, messages, max_tokens, api_key, session=f"user-{number % users}" if users else None))
        if (number + 1) % 20 == 0:
            progress(f"{number + 1} requests sent")
    return results


def send(endpoint: str, messages: list[dict[str, str]], max_tokens: int, api_key: str = "",
         session: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One chat request; `session` is the OpenAI `user` field, the gateway's sticky routing key."""
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": 0,
                       **({"user": session} if session else {})}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
               **(headers or {})}
    request = urllib.request.Request(f"{endpoint}/chat/completions", data=body, headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.load(response)
            status = response.status
    except urllib.error.HTTPError as exc:
        answer, status = json.loads(exc.read() or b"{}"), exc.code
    latency_ms = (time.perf_counter() - started) * 1000
    choices = answer.get("choices") or [{}]
    return {"status": status, "latency_ms": latency_ms, "request_id": answer.get("request_id"),
            "release": (answer.get("release") or {}).get("version"),
            "role": (answer.get("release") or {}).get("role"),
            "answer": (choices[0].get("message") or {}).get("content")}


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status and by the role of the release that answered, latency percentiles (ms)."""
    latencies = sorted(r["latency_ms"] for r in results)

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] if latencies else 0.0

    statuses: dict[str, int] = {}
    roles: dict[str, int] = {}
    for result in results:
        statuses[str(result["status"])] = statuses.get(str(result["status"]), 0) + 1
        roles[str(result.get("role"))] = roles.get(str(result.get("role")), 0) + 1
    return {"requests": len(results), "by_status": statuses, "by_role": roles, "p50_ms": percentile(0.5),
            "p95_ms": percentile(0.95), "p99_ms": percentile(0.99)}
