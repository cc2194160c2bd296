"""The release registry: which model versions are live, in which role, with what traffic, and how
they got there. It lives in the artifact store (`<root>/.releases/events/`), so every process and
pod that shares the store sees the same releases.

The registry is an append-only event log: each event is one record written create-only under the
next sequence number (a writer that loses the race re-reads and takes the next one), and carries
the release as it is after the event. The state of a release is its latest event. `llmops
status`, rollback, evaluation's champion, the synthetic generator's `served` endpoint and the
deployment checks read it; `deployment_status.json` under LLMOPS_HOME is a view of the champion
written after each change, for users and agents that read a file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from llmops_assets.core.storage import ArtifactStore, read_json, write_json

STATUS_FILE = "deployment_status.json"
EVENTS = ".releases/events"

Role = Literal["champion", "canary", "shadow", "retired"]  # canary and shadow: the challenger
CHALLENGER_ROLES = ("canary", "shadow")
EventKind = Literal["registered", "rejected", "role_changed", "stopped", "restarted"]


class Release(BaseModel):
    """One served GGUF: where it answers, its role and traffic, and what it was built from."""

    version: str = Field(description="The GGUF artifact version the release serves.")
    model_sha256: str
    quantization: str
    task_accuracy: float | None = None
    server: str = Field(description="The target serving it: llamacpp, ollama or kubernetes.")
    endpoint: str
    model: str = Field(description="The name requests use.")
    model_name: str
    pid: int | None = None
    pid_started_at: float | None = Field(None, description="The server process's start time: with the pid, it "
                                                           "tells our server from a later process.")
    log_file: str | None = None
    tag: str | None = None
    deployment: str | None = Field(None, description="On Kubernetes: the Deployment and Service serving it.")
    namespace: str | None = None
    model_path: str = Field(description="The GGUF on the machine that started the server.")
    role: Role = "champion"
    traffic_weight: float = Field(1.0, ge=0, le=1)
    status: Literal["serving", "stopped"] = "serving"
    inputs: dict[str, str] = Field(default_factory=dict, description="Lineage: the artifact versions it came from.")
    release_number: int
    deployed_at: float
    previous_version: str | None = None
    rolled_back_from: str | None = None
    probe: dict[str, Any] = Field(default_factory=dict)
    probe_request: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.status == "serving" and self.role != "retired"

    def view(self) -> dict[str, Any]:
        """The release as `deployment_status.json` shows it."""
        return self.model_dump(mode="json")


class ReleaseEvent(BaseModel):
    seq: int
    at: float
    kind: EventKind
    version: str  # the GGUF version concerned
    release_number: int | None = None  # the release concerned; None for a rejected candidate
    release: Release | None = None  # the release after the event; None for a rejected candidate
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class ReleaseRegistry:
    def __init__(self, store: ArtifactStore):
        self.store = store
        self._read: dict[int, ReleaseEvent] = {}  # events are immutable: read each once

    def events(self) -> list[ReleaseEvent]:
        """Every event, oldest first."""
        for name in self.store.record_names(EVENTS):
            seq = int(name.removesuffix(".json"))
            if seq not in self._read:
                self._read[seq] = ReleaseEvent.model_validate_json(self.store.read_record(f"{EVENTS}/{name}"))
        return [self._read[seq] for seq in sorted(self._read)]

    def releases(self) -> dict[int, Release]:
        """Every release that was ever registered, as it is now, by release number (one GGUF
        version can be released again, by a rollback or on another target)."""
        return {e.release.release_number: e.release for e in self.events() if e.release is not None}

    def champion(self) -> Release | None:
        """The release that takes the traffic, or None when nothing is served (never deployed, or stopped)."""
        found = [r for r in self.releases().values() if r.role == "champion" and r.status == "serving"]
        return max(found, key=lambda r: r.deployed_at) if found else None

    def challenger(self) -> Release | None:
        """The live canary or shadow release being compared with the champion, if any."""
        found = [r for r in self.live() if r.role in CHALLENGER_ROLES]
        return max(found, key=lambda r: r.deployed_at) if found else None

    def live(self) -> list[Release]:
        return [r for r in self.releases().values() if r.live]

    def next_release_number(self) -> int:
        return 1 + max(self.releases(), default=0)

    def register(self, release: Release) -> ReleaseEvent:
        return self._append("registered", release.version, release)

    def reject(self, version: str, reason: str, details: dict[str, Any]) -> ReleaseEvent:
        return self._append("rejected", version, None, reason, details)

    def set_role(self, release_number: int, role: Role, traffic_weight: float, reason: str = "") -> ReleaseEvent:
        release = self.releases()[release_number].model_copy(update={"role": role, "traffic_weight": traffic_weight})
        return self._append("role_changed", release.version, release, reason)

    def mark_stopped(self, release_number: int, reason: str) -> ReleaseEvent:
        release = self.releases()[release_number].model_copy(update={"status": "stopped", "traffic_weight": 0.0})
        return self._append("stopped", release.version, release, reason)

    def restarted(self, release_number: int, pid: int, pid_started_at: float, log_file: str, reason: str) -> ReleaseEvent:
        """The release's server died and a new process serves the same GGUF at the same endpoint."""
        release = self.releases()[release_number].model_copy(
            update={"pid": pid, "pid_started_at": pid_started_at, "log_file": log_file})
        return self._append("restarted", release.version, release, reason)

    def rollback_target(self, version: str) -> Release:
        """The release to serve again: `previous` (the one the champion replaced) or a version
        that was served before. Only releases that once passed their probes qualify."""
        served = list(self.releases().values())
        if version == "previous":
            champion = self.champion()
            version = (champion.previous_version if champion else None) or ""
            if not version:
                raise ValueError("there is no previous release to roll back to")
        matches = [r for r in served if r.version == version]
        if not matches:
            known = ", ".join(dict.fromkeys(r.version for r in served)) or "none"
            raise ValueError(f"version {version!r} was never served; releases that were: {known}")
        return matches[-1]

    def write_views(self, home: Path) -> None:
        """`deployment_status.json`: the champion as served now (or the last one, stopped)."""
        current = self.last_champion()
        if current is not None:
            write_json(Path(home) / STATUS_FILE, current.view())

    def last_champion(self) -> Release | None:
        """The champion, or the last release that was one when nothing is served (it was stopped):
        what a candidate must not be worse than."""
        registered = [e.release for e in self.events() if e.release is not None and e.release.role == "champion"]
        return self.champion() or (registered[-1] if registered else None)

    def _append(self, kind: EventKind, version: str, release: Release | None, reason: str = "",
                details: dict[str, Any] | None = None) -> ReleaseEvent:
        while True:
            events = self.events()
            seq = events[-1].seq + 1 if events else 1
            event = ReleaseEvent(seq=seq, at=time.time(), kind=kind, version=version,
                                 release_number=release.release_number if release else None, release=release,
                                 reason=reason, details=details or {})
            if self.store.create_only(f"{EVENTS}/{seq:08d}.json", event.model_dump_json(indent=2).encode()):
                self._read[seq] = event
                return event  # else another writer took this number: read it and take the next


def read_status(home: Path) -> dict[str, Any] | None:
    """The `deployment_status.json` view, as users and agents read it."""
    path = Path(home) / STATUS_FILE
    return read_json(path) if path.exists() else None


def status_path(home: Path) -> Path:
    return Path(home) / STATUS_FILE
