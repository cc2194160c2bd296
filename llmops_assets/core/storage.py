"""The artifact store: one directory per asset version, written atomically with a manifest.

A writer fills a temp directory; only on success is the manifest written and the directory
renamed to `<root>/<asset>/<version>/`, the version being the content hash of its files. A crash
therefore leaves a `.tmp-*` directory that nothing reads, never a half artifact that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    asset: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        path = Path(path)
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise FileNotFoundError(f"{path}: no {MANIFEST}; not a complete artifact")
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        return cls(manifest["asset"], manifest["version"], path, manifest)


@dataclass
class ArtifactWriter:
    """What an asset body fills: files under `dir`, plus inputs, config and metrics."""

    asset: str
    dir: Path
    inputs: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # set when published


class ArtifactStore:
    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = self.home / "artifacts"

    @contextmanager
    def write(self, asset: str, inputs: dict[str, str] | None = None,
              config: dict[str, Any] | None = None) -> Iterator[ArtifactWriter]:
        """Yield a writer on a temp dir; publish it under its content hash when the block ends."""
        parent = self.root / asset
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
        writer = ArtifactWriter(asset, tmp, dict(inputs or {}), dict(config or {}))
        try:
            yield writer
            self._publish(writer)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, writer: ArtifactWriter) -> None:
        files = {
            p.relative_to(writer.dir).as_posix(): file_sha256(p)
            for p in sorted(writer.dir.rglob("*")) if p.is_file()
        }
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        manifest = {
            "asset": writer.asset,
            "version": digest,
            "inputs": writer.inputs,
            "config": writer.config,
            "metrics": writer.metrics,
            "files": files,
            "created_at": time.time(),
        }
        (writer.dir / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        final = self.root / writer.asset / digest
        if not final.exists():  # same content published before: keep that one, it is identical
            os.rename(writer.dir, final)
        writer.dir = final
        writer.version = digest

    def get(self, asset: str, version: str) -> Artifact:
        return Artifact.load(self.root / asset / version)

    def find(self, asset: str, inputs: dict[str, str], config: dict[str, Any]) -> Artifact | None:
        """The newest artifact built from exactly these inputs and this config: a rerun with
        nothing changed reuses it instead of recomputing (deterministic stages only)."""
        wanted = _canonical({"inputs": inputs, "config": config})
        matches = [a for a in self.versions(asset)
                   if _canonical({"inputs": a.manifest["inputs"], "config": a.manifest["config"]}) == wanted]
        return matches[-1] if matches else None

    def work_dir(self, asset: str, inputs: dict[str, str], config: dict[str, Any]) -> Path:
        """Scratch space of one build (checkpoints): the same inputs and config get the same
        folder, so a retry after a crash or kill finds what the failed attempt left there."""
        key = hashlib.sha256(_canonical({"inputs": inputs, "config": config}).encode()).hexdigest()[:16]
        return self.root / asset / ".work" / key

    def versions(self, asset: str) -> list[Artifact]:
        """Complete versions of an asset, oldest first."""
        parent = self.root / asset
        if not parent.is_dir():
            return []
        found = [Artifact.load(p) for p in parent.iterdir()
                 if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()]
        return sorted(found, key=lambda a: a.manifest["created_at"])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def link_tree(source: str | Path, target: str | Path) -> None:
    """`target` as a copy of the folder `source`, its files hard-linked where the file system
    allows (artifacts are immutable once published, so sharing their bytes is safe)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not supported: a real copy
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace a file so that readers see the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: list[Any]) -> None:
    Path(path).write_text("".join(map(jsonl_line, rows)), encoding="utf-8")


def jsonl_line(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def read_jsonl(path: str | Path) -> list[Any]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
