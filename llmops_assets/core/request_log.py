"""The gateway's durable request log: every request, its answer and the release that gave it.

SQLAlchemy Core over any database URL: SQLite in `$LLMOPS_HOME/gateway/requests.sqlite` by
default, Postgres (`postgresql+psycopg://...`) where the Dagster instance uses it. A request id
leads to the release, and from it (`llmops trace`) to the GGUF, adapter, data and eval report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)

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
    Column("probe_id", String(128)),  # a labelled probe (canary analysis): the same id on each release's copy
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


FEEDBACK = Table(
    "feedback", _METADATA,
    Column("feedback_id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("received_at", Float, nullable=False),
    Column("client", String(64), nullable=False),  # who sent the feedback (hashed key), for per-client caps
    Column("rating", Integer),  # -1 bad, 0 neutral, 1 good
    Column("correction", JSON),  # the right answer: a tool call {"name", "arguments"} or a text
    Column("comment", Text),
    Column("signal", String(16)),  # an implicit signal: retried, edited, undone
)
SIGNALS = ("retried", "edited", "undone")


def feedback_problem(body: Any) -> str | None:
    """Why a feedback body cannot be stored, or None: the shape `POST /v1/feedback` accepts."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = set(body) - {"request_id", "rating", "correction", "comment", "signal"}
    if unknown:
        return f"unknown fields {sorted(unknown)}: send request_id, rating, correction, comment, signal"
    if not isinstance(body.get("request_id"), str) or not body["request_id"]:
        return "request_id (the x-request-id of the answer) is required"
    rating = body.get("rating")
    if rating is not None and (isinstance(rating, bool) or rating not in (-1, 0, 1)):
        return "rating must be -1 (bad), 0 or 1 (good)"
    correction = body.get("correction")
    if correction is not None and not (isinstance(correction, str) and correction.strip()) and not (
            isinstance(correction, dict) and isinstance(correction.get("name"), str)
            and isinstance(correction.get("arguments"), dict) and set(correction) == {"name", "arguments"}):
        return 'correction must be a text or a tool call {"name": ..., "arguments": {...}}'
    if body.get("comment") is not None and (not isinstance(body["comment"], str) or len(body["comment"]) > 4000):
        return "comment must be a text of at most 4000 characters"
    if body.get("signal") is not None and body["signal"] not in SIGNALS:
        return f"signal must be one of {list(SIGNALS)}"
    if all(body.get(k) is None for k in ("rating", "correction", "signal")):
        return "say something: a rating, a correction or a signal"
    return None


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
        self._add_new_columns()

    def record(self, entry: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(REQUESTS.insert().values(**entry))

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(REQUESTS).where(REQUESTS.c.request_id == request_id)).mappings().first()
        return dict(row) if row else None

    def add_feedback(self, entry: dict[str, Any]) -> int:
        with self.engine.begin() as connection:
            return connection.execute(FEEDBACK.insert().values(**entry)).inserted_primary_key[0]

    def feedback(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Every feedback item (on one request), oldest first, each with the request it is about."""
        query = select(FEEDBACK, REQUESTS.c.messages, REQUESTS.c.answer, REQUESTS.c.release_version,
                       REQUESTS.c.release_number).join(REQUESTS, FEEDBACK.c.request_id == REQUESTS.c.request_id)
        if request_id is not None:
            query = query.where(FEEDBACK.c.request_id == request_id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query.order_by(FEEDBACK.c.feedback_id)).mappings()]

    def last_feedback_id(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(FEEDBACK.c.feedback_id))).scalar_one() or 0

    def recent_client_requests(self, limit: int) -> list[dict[str, Any]]:
        """The newest requests clients sent (no shadow copies, no probes), newest first."""
        query = (select(REQUESTS).where(REQUESTS.c.shadow_of.is_(None), REQUESTS.c.probe_id.is_(None))
                 .order_by(REQUESTS.c.received_at.desc()).limit(limit))
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def since(self, received_after: float) -> list[dict[str, Any]]:
        """Every request received after a time, oldest first (what a canary analysis compares)."""
        query = select(REQUESTS).where(REQUESTS.c.received_at >= received_after).order_by(REQUESTS.c.received_at)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def _add_new_columns(self) -> None:
        """A log written by an older gateway gets the columns added since (null in its rows)."""
        present = {column["name"] for column in inspect(self.engine).get_columns(REQUESTS.name)}
        with self.engine.begin() as connection:
            for column in REQUESTS.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    connection.execute(text(f"ALTER TABLE {REQUESTS.name} ADD COLUMN {column.name} {kind}"))

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(REQUESTS)).scalar_one()


def _sqlite_wal(connection, _record) -> None:
    """Write-ahead logging: the gateway writes while `llmops trace` and the assets read."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

