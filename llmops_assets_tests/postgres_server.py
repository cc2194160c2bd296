"""A real PostgreSQL (Debian's `postgresql` package) on 127.0.0.1, in a fresh data folder,
started for a test and stopped after it. `initdb` refuses to run as root, so as root the server
runs as the `postgres` user; connections from 127.0.0.1 are trusted (no password)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, whose server-side parameters break
# dagster-postgres' NOTIFY: the instance and the request log name psycopg2.
DRIVER = "postgresql+psycopg2://"


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql; .ci/run does)")
    return found[-1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server(databases: tuple[str, ...] = ("dagster",)) -> Iterator[str]:
    """Start a server in a fresh data folder (its own, under the system temp folder, which the
    `postgres` user can reach: pytest's tmp_path is private to root); yield its URL without a
    database name (`postgresql+psycopg2://postgres@127.0.0.1:PORT`), each of `databases` created."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="llmops-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")

    def run(command: list[str]) -> None:
        done = subprocess.run(_as_server_user(command), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")

    run([_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"])
    run([_binary("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
         "-o", f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off", "start"])
    try:
        for name in databases:
            run([_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name])
        yield f"{DRIVER}postgres@127.0.0.1:{port}"
    finally:
        run([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(data, ignore_errors=True)


def write_instance(dagster_home: Path, postgres: str, **sections: Any) -> None:
    """dagster.yaml for an instance whose runs, events and schedules live in `postgres`/dagster."""
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump({
        "storage": {"postgres": {"postgres_url": f"{postgres}/dagster"}}, "telemetry": {"enabled": False}, **sections}))
