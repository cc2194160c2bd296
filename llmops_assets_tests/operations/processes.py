"""Real Dagster processes for the operations tests: started in their own session on 127.0.0.1,
logged to a file, stopped by PID (the whole process group) whatever happens."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from llmops_assets.cli import DAGSTER_YAML

BIN = Path(sys.executable).parent  # the venv's dagster-webserver and dagster-daemon
WORKSPACE = "load_from:\n  - python_module:\n      module_name: llmops_assets.definitions\n      attribute: defs\n" \
            "      location_name: llmops_assets\n"


def instance_env(root: Path, config: Path) -> dict[str, str]:
    """A throwaway Dagster instance (SQLite, telemetry off) and pipeline home under `root`."""
    dagster_home = root / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    (root / "workspace.yaml").write_text(WORKSPACE)
    return os.environ | {"DAGSTER_HOME": str(dagster_home), "LLMOPS_HOME": str(root / "llmops"),
                         "LLMOPS_CONFIG": str(config), "DAGSTER_DISABLE_TELEMETRY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dagster_process(args: list[str], env: dict[str, str], cwd: Path, log: Path):
    with open(log, "w") as out:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def webserver(root: Path, env: dict[str, str]):
    """`dagster-webserver` on a free port; yields its base URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(root / "workspace.yaml")]
    with dagster_process(args, env, root, root / "webserver.log") as process:
        wait_until(lambda: _answers(f"{url}/server_info"), 120, f"webserver on {url}", process, root / "webserver.log")
        wait_until(lambda: graphql(url, "{ assetNodes { id } }")["assetNodes"], 120, "code location loaded",
                   process, root / "webserver.log")
        yield url


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise AssertionError(payload["errors"])
    return payload["data"]


def wait_until(condition, timeout_s: float, what: str, process=None, log: Path | None = None, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited {process.returncode}\n{_tail(log)}")
        try:
            result = condition()
        except Exception:  # not up yet: connection refused, location still loading
            result = None
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s}s\n{_tail(log)}")


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def _tail(log: Path | None) -> str:
    return log.read_text()[-3000:] if log and log.exists() else ""
