"""The embedded model server: llama-cpp-python's OpenAI-compatible server on 127.0.0.1.

It runs detached (its own session, pid file, log file), so it keeps serving after the Dagster
run that started it; probes measure what a client sees: health, first-token latency, memory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LLAMACPP_MARKER = "llama_cpp.server"


@dataclass(frozen=True)
class ServerHandle:
    pid: int
    started_at: float  # the process's start time: with the pid, it tells our server from a later process
    endpoint: str  # the OpenAI-compatible base URL, e.g. http://127.0.0.1:8765/v1
    log_file: Path


def start_llamacpp(model_path: Path, alias: str, host: str, port: int, n_threads: int,
                   n_ctx: int, run_dir: Path, api_key: str = "") -> ServerHandle:
    """Start the server detached; with `api_key`, clients must send it as a Bearer token."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if port and not port_is_free(host, port):
        raise RuntimeError(f"{host}:{port} is in use (by the release being served?); a candidate starts beside "
                           "the served release, so set stages.deployment.port: 0 to give each release a free port")
    port = port or free_port(host)
    log_file = run_dir / f"server-{port}.log"
    command = llamacpp_command(model_path, alias, host, port, n_threads, n_ctx)
    # The server reads its key from API_KEY (kept off the command line, where `ps` shows it); an
    # API_KEY the user's shell happens to hold must not lock out the probes.
    environment = {k: v for k, v in os.environ.items() if k.upper() != "API_KEY"} | ({"API_KEY": api_key} if api_key else {})
    pid, started_at = start_detached(command, environment, log_file)
    (run_dir / f"server-{port}.pid").write_text(str(pid))
    return ServerHandle(pid, started_at, f"http://{host}:{port}/v1", log_file)


def llamacpp_command(model_path: Path, alias: str, host: str, port: int, n_threads: int, n_ctx: int) -> list[str]:
    """llama.cpp's OpenAI-compatible server on `model_path`, as every release runs it."""
    return [sys.executable, "-m", LLAMACPP_MARKER, "--model", str(model_path),
            "--model_alias", alias, "--host", host, "--port", str(port),
            "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads), "--n_ctx", str(n_ctx),
            "--logits_all", "False",  # the server defaults to logits for every prompt token
            # By default a new request cuts off the one being streamed (its client sees a broken
            # stream): with concurrent clients, a shadow's copies or a canary, requests queue instead.
            "--interrupt_requests", "False"]


def start_detached(command: list[str], environment: dict[str, str], log_file: Path) -> tuple[int, float]:
    """(pid, start time) of `command` started in its own session, output appended to `log_file`:
    it outlives the process that started it, and the start time tells it from a later process."""
    import psutil

    with open(log_file, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return process.pid, psutil.Process(process.pid).create_time()


def _headers(api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


def wait_healthy(endpoint: str, pid: int, timeout_s: float, api_key: str = "") -> float:
    """Seconds until `/v1/models` answers (the server has no /health); raise if it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not is_alive(pid):
            raise RuntimeError(f"the model server (pid {pid}) exited before answering on {endpoint}")
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/models", headers=_headers(api_key)),
                                        timeout=2) as response:
                if response.status == 200 and json.load(response).get("data"):
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the model server on {endpoint} did not answer within {timeout_s:.0f}s")


def first_token_ms(endpoint: str, model: str, messages: list[dict[str, str]], api_key: str = "") -> float:
    """Milliseconds from sending a streamed chat request to the first content token."""
    body = json.dumps({"model": model, "messages": messages, "stream": True,
                       "max_tokens": 8, "temperature": 0}).encode()
    request = urllib.request.Request(f"{endpoint}/chat/completions", data=body, headers=_headers(api_key))
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {})
            if delta.get("content"):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError(f"{endpoint} streamed no content token")


def resident_memory_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def is_our_server(pid: int, started_at: float | None = None, marker: str = LLAMACPP_MARKER) -> bool:
    """`pid` is our server, its command line holding `marker` (a llama.cpp server, or the gateway)
    and, given its recorded start time, the same process: a pid read from a file may belong to
    another process after a reboot or a crash."""
    import psutil

    try:
        process = psutil.Process(pid)
        command, created = process.cmdline(), process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return marker in command and (started_at is None or abs(created - started_at) < 1.0)


def stop(pid: int, started_at: float | None = None, timeout_s: float = 10, marker: str = LLAMACPP_MARKER) -> bool:
    """SIGTERM the server's process group, SIGKILL it if it lingers; only when `pid` is still our
    server. False when there was nothing of ours to stop."""
    if not is_alive(pid) or not is_our_server(pid, started_at, marker):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_is_free(host: str, port: int) -> bool:
    """Nothing listens on it (connections of a stopped server lingering in TIME_WAIT do not count,
    as servers bind with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]

