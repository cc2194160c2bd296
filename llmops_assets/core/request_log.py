"""The gateway's durable request log: every request, its answer and the release that gave it.

SQLAlchemy Core over any database URL: SQLite in `$LLMOPS_HOME/gateway/requests.sqlite` by
default, Postgres (`postgresql+psycopg2://...`) where the Dagster instance uses it. A request id
leads to the release, and from it (`llmops trace`) to the GGUF, adapter, data and eval report.
"""

from __future__ import annotations

import time
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
    Column("source", String(16)),  # "client" (POST /v1/feedback) or "review" (the review queue); None: client
)
SIGNALS = ("retried", "edited", "undone")
REVIEW_ACTIONS = {"approve": 1, "reject": -1, "correct": -1}  # the rating each review decision stores
# Why a request waits for review: what drift_report flags (a prompt in a drifted cluster), beside
# what the log itself shows (a disliked answer or an implicit signal, a call the schema rejected).
REVIEW_FLAGS = Table(
    "review_flags", _METADATA,
    Column("request_id", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("flagged_at", Float, nullable=False),
)


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


def review_problem(body: Any) -> str | None:
    """Why a review decision cannot be stored, or None: {"request_id", "action", "correction"?, "comment"?}."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = set(body) - {"request_id", "action", "correction", "comment"}
    if unknown:
        return f"unknown fields {sorted(unknown)}: send request_id, action, correction, comment"
    if body.get("action") not in REVIEW_ACTIONS:
        return f"action must be one of {list(REVIEW_ACTIONS)}"
    if (body["action"] == "correct") != (body.get("correction") is not None):
        return "a correction comes with action 'correct', and only with it"
    return feedback_problem({"request_id": body.get("request_id"), "rating": REVIEW_ACTIONS[body["action"]],
                             **{k: body[k] for k in ("correction", "comment") if k in body}})


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

    def feedback(self, request_id: str | None = None, received: tuple[float, float] | None = None,
                 after_id: int = 0, request_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Every feedback item (on one request, or on these; `received` in [start, end); after an
        id), oldest first, each with the request it is about."""
        query = select(FEEDBACK, REQUESTS.c.messages, REQUESTS.c.answer, REQUESTS.c.release_version,
                       REQUESTS.c.release_number).join(REQUESTS, FEEDBACK.c.request_id == REQUESTS.c.request_id)
        if request_id is not None:
            query = query.where(FEEDBACK.c.request_id == request_id)
        if request_ids is not None:
            query = query.where(FEEDBACK.c.request_id.in_(request_ids))
        if received is not None:
            query = query.where(FEEDBACK.c.received_at >= received[0], FEEDBACK.c.received_at < received[1])
        if after_id:
            query = query.where(FEEDBACK.c.feedback_id > after_id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query.order_by(FEEDBACK.c.feedback_id)).mappings()]

    def flag_for_review(self, reasons: dict[str, str]) -> int:
        """Put requests on the review queue ({request_id: why}); a request flagged before keeps its first reason."""
        with self.engine.begin() as connection:
            flagged = set(connection.execute(select(REVIEW_FLAGS.c.request_id).where(
                REVIEW_FLAGS.c.request_id.in_(list(reasons)))).scalars())
            new = [{"request_id": r, "reason": why, "flagged_at": time.time()}
                   for r, why in reasons.items() if r not in flagged]
            if new:
                connection.execute(REVIEW_FLAGS.insert(), new)
        return len(new)

    def review_queue(self, limit: int = 100) -> list[dict[str, Any]]:
        """Client requests no reviewer has decided on yet, newest first, each with why it waits:
        a client disliked the answer or sent an implicit signal, the schema rejected its call, or
        drift_report flagged it; with the feedback it got."""
        reviewed = select(FEEDBACK.c.request_id).where(FEEDBACK.c.source == "review")
        complained = select(FEEDBACK.c.request_id).where(
            (FEEDBACK.c.source.is_(None) | (FEEDBACK.c.source == "client"))
            & ((FEEDBACK.c.rating == -1) | FEEDBACK.c.signal.is_not(None) | FEEDBACK.c.correction.is_not(None)))
        query = (select(REQUESTS, REVIEW_FLAGS.c.reason.label("flag"))
                 .outerjoin(REVIEW_FLAGS, REVIEW_FLAGS.c.request_id == REQUESTS.c.request_id)
                 .where(REQUESTS.c.shadow_of.is_(None), REQUESTS.c.probe_id.is_(None),
                        REQUESTS.c.request_id.not_in(reviewed),
                        REQUESTS.c.request_id.in_(complained) | (REQUESTS.c.tool_call_valid == False)  # noqa: E712
                        | REVIEW_FLAGS.c.reason.is_not(None))
                 .order_by(REQUESTS.c.received_at.desc()).limit(limit))
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
        feedback: dict[str, list] = {}
        for item in self.feedback(request_ids=[row["request_id"] for row in rows]):
            feedback.setdefault(item["request_id"], []).append(item)
        for row in rows:
            row["feedback"] = feedback.get(row["request_id"], [])
            row["reasons"] = _review_reasons(row)
        return rows

    def last_feedback_id(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(FEEDBACK.c.feedback_id))).scalar_one() or 0

    def client_requests_since(self, received_after: float) -> int:
        """How many requests clients sent after a time (what the drift sensor waits for)."""
        query = select(func.count()).select_from(REQUESTS).where(
            REQUESTS.c.shadow_of.is_(None), REQUESTS.c.probe_id.is_(None), REQUESTS.c.received_at > received_after)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()

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
        with self.engine.begin() as connection:
            for table in (REQUESTS, FEEDBACK):
                present = {column["name"] for column in inspect(self.engine).get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(REQUESTS)).scalar_one()


def _review_reasons(row: dict[str, Any]) -> list[str]:
    reasons = []
    client_feedback = [f for f in row["feedback"] if f.get("source") != "review"]
    if any(f["rating"] == -1 for f in client_feedback):
        reasons.append("a client disliked the answer")
    if any(f["correction"] is not None for f in client_feedback):
        reasons.append("a client corrected the answer")
    reasons += [f"implicit signal: {f['signal']}" for f in client_feedback if f["signal"]]
    if row["tool_call_valid"] is False:
        reasons.append("the tool call breaks the schema")
    if row["flag"]:
        reasons.append(row["flag"])
    return reasons


def _sqlite_wal(connection, _record) -> None:
    """Write-ahead logging: the gateway writes while `llmops trace` and the assets read."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

