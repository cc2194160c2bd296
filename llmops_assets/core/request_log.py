"""The gateway's durable request log: every request, its answer and the release that gave it.

SQLAlchemy Core over any database URL: SQLite in `$LLMOPS_HOME/gateway/requests.sqlite` by
default, Postgres (`postgresql+psycopg://...`) where the Dagster instance uses it. A request id
leads to the release, and from it (`llmops trace`) to the GGUF, adapter, data and eval report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, Text, create_engine, event, func, select

_METADATA = MetaData()
REQUESTS = Table(
    "requests", _METADATA,
    Column("request_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("client", String(64), nullable=False),  # a hash of the API key, or "anonymous"
    Column("session", String(128)),  # the sticky-routing key the client sent, if any
    Column("release_number", Integer),
    Column("release_version", String(64)),
    Column("role", String(16)),  # champion, canary or shadow
    Column("shadow_of", String(64)),  # for a shadow's copy: the client request it mirrors
    Column("model", String(128)),
    Column("messages", JSON, nullable=False),  # as the model saw them (system prompt included)
    Column("answer", Text),
    Column("status", Integer, nullable=False),  # the HTTP status the client got (or would have, for a shadow)
    Column("error", Text),
    Column("latency_ms", Float),
    Column("first_token_ms", Float),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("tool_call_valid", Boolean),  # None: a text answer; else whether the call matches the schema
)


def default_url(home: Path) -> str:
    path = Path(home) / "gateway" / "requests.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class RequestLog:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_wal)
        _METADATA.create_all(self.engine)

    def record(self, entry: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(REQUESTS.insert().values(**entry))

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(REQUESTS).where(REQUESTS.c.request_id == request_id)).mappings().first()
        return dict(row) if row else None

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(REQUESTS)).scalar_one()


def _sqlite_wal(connection, _record) -> None:
    """Write-ahead logging: the gateway writes while `llmops trace` and the assets read."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

