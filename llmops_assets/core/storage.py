"""The artifact store, addressed by a URL: a local folder (the default) or an object store
(`s3://bucket/prefix`, any S3-compatible service through fsspec/s3fs).

Each asset version lives under `<root>/<asset>/<version>/`, the version being the content hash
of its files. A writer fills a local folder; publishing uploads every file, then writes
`manifest.json` last and only if none exists (a rename locally; S3 `If-None-Match: *`), so a
crash never leaves a half version that looks valid and, of two writers of one version, one wins
and the other reuses what the winner published. Readers require the manifest. Stage code gets
local paths: on an object store, from a read cache keyed by version (never stale: versions are
immutable). `gc` removes version folders that never got a manifest.
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


class VersionExists(Exception):
    """Another writer published this version first (same content): reuse theirs."""


@dataclass(frozen=True)
class Artifact:
    asset: str
    version: str
    manifest: dict[str, Any]
    store: ArtifactStore = field(repr=False, compare=False)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def path(self) -> Path:
        """The version's files on this machine (fetched into the read cache on first use)."""
        return self.store.local_path(self.asset, self.version)

    @property
    def url(self) -> str:
        return self.store.url_of(self.asset, self.version)


@dataclass
class ArtifactWriter:
    """What an asset body fills: files under `dir`, plus inputs, config and metrics."""

    asset: str
    dir: Path
    inputs: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # set when published
    reused: bool = False  # True: another writer had published the same content first; theirs stands


class ArtifactStore:
    """Artifacts under `url` (a folder or `s3://bucket/prefix`); `cache_dir` holds local copies
    of remote versions and scratch space (required for an object store; a folder is read in place)."""

    def __init__(self, url: str | Path, cache_dir: str | Path | None = None):
        import fsspec

        self.url = str(url).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.remote = "file" not in _protocols(self.fs)
        if self.remote and cache_dir is None:
            raise ValueError(f"{self.url}: an object-store artifact root needs a local cache folder")
        self.local_root = None if self.remote else Path(self.root)
        self.cache = Path(cache_dir) if cache_dir else None  # a folder store is read in place

    # --- writing -------------------------------------------------------------------------------
    @contextmanager
    def write(self, asset: str, inputs: dict[str, str] | None = None,
              config: dict[str, Any] | None = None) -> Iterator[ArtifactWriter]:
        """Yield a writer on a local temp dir; publish it under its content hash when the block ends."""
        parent = (self.local_root / asset) if self.local_root else (self.cache / "staging" / asset)
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
        text = json.dumps(manifest, indent=2, default=str)
        try:
            if self.local_root:
                self._publish_locally(writer.dir, writer.asset, digest, text)
            else:
                self._upload(writer.dir, writer.asset, digest, files, text)
        except VersionExists:
            writer.reused = True  # identical content is published already: that version stands
        writer.version = digest
        writer.dir = self.local_path(writer.asset, digest)

    def _publish_locally(self, folder: Path, asset: str, version: str, manifest: str) -> None:
        (folder / MANIFEST).write_text(manifest, encoding="utf-8")
        try:
            os.rename(folder, self.local_root / asset / version)  # atomic: the version appears whole
        except OSError as exc:
            if (self.local_root / asset / version / MANIFEST).is_file():
                raise VersionExists(version) from exc
            raise

    def _upload(self, folder: Path, asset: str, version: str, files: dict[str, str], manifest: str) -> None:
        prefix = self._key(asset, version)
        if self.fs.exists(f"{prefix}/{MANIFEST}"):
            raise VersionExists(version)
        for name in files:
            self.fs.put_file(str(folder / name), f"{prefix}/{name}")
        try:
            with self.fs.open(f"{prefix}/{MANIFEST}", "xb") as out:  # create-only: S3 If-None-Match: *
                out.write(manifest.encode("utf-8"))
        except FileExistsError as exc:
            raise VersionExists(version) from exc
        # The writer's folder is this version's local copy: no download to read it back.
        (folder / MANIFEST).write_text(manifest, encoding="utf-8")
        target = self.cache / "versions" / asset / version
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, target)
        except OSError:
            pass  # already cached by an earlier read or writer: identical content

    # --- reading -------------------------------------------------------------------------------
    def get(self, asset: str, version: str) -> Artifact:
        """A complete version; FileNotFoundError when it has no manifest (absent or half written)."""
        return Artifact(asset, version, self._manifest(asset, version), self)

    def exists(self, asset: str, version: str) -> bool:
        try:
            self._manifest(asset, version)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, asset: str, version: str) -> Path:
        """The version's folder on this machine: the store itself, or the read cache."""
        if self.local_root:
            return self.local_root / asset / version
        target = self.cache / "versions" / asset / version
        if not (target / MANIFEST).is_file():
            self._download(asset, version, target)
        return target

    def url_of(self, asset: str, version: str) -> str:
        return f"{self.url}/{asset}/{version}"

    def versions(self, asset: str) -> list[Artifact]:
        """Complete versions of an asset, oldest first."""
        found = []
        for prefix in self._listing(asset):
            version = prefix.rsplit("/", 1)[-1]
            if not version.startswith(".") and self.exists(asset, version):
                found.append(self.get(asset, version))
        return sorted(found, key=lambda a: a.manifest["created_at"])

    def find(self, asset: str, inputs: dict[str, str], config: dict[str, Any]) -> Artifact | None:
        """The newest artifact built from exactly these inputs and this config: a rerun with
        nothing changed reuses it instead of recomputing (deterministic stages only)."""
        wanted = _canonical({"inputs": inputs, "config": config})
        matches = [a for a in self.versions(asset)
                   if _canonical({"inputs": a.manifest["inputs"], "config": a.manifest["config"]}) == wanted]
        return matches[-1] if matches else None

    def work_dir(self, asset: str, inputs: dict[str, str], config: dict[str, Any]) -> Path:
        """Local scratch space of one build (checkpoints): the same inputs and config get the same
        folder, so a retry after a crash or kill finds what the failed attempt left there."""
        key = hashlib.sha256(_canonical({"inputs": inputs, "config": config}).encode()).hexdigest()[:16]
        if self.local_root:
            return self.local_root / asset / ".work" / key
        return self.cache / "work" / asset / key

    def gc(self, min_age_s: float = 3600) -> list[str]:
        """Remove version folders without a manifest (a crashed or killed publish) that are older
        than `min_age_s` (younger ones may be uploads in progress); the URLs removed."""
        removed = []
        for asset in self._assets():
            for prefix in self._listing(asset):
                name = prefix.rsplit("/", 1)[-1]
                if name == ".work" or self.fs.exists(f"{prefix}/{MANIFEST}"):
                    continue
                if time.time() - self._modified(prefix) >= min_age_s:
                    self.fs.rm(prefix, recursive=True)
                    removed.append(f"{self.url}/{asset}/{name}")
        return removed

    # --- small records beside the versions (the release registry) ---------------------------------
    def create_only(self, key: str, data: bytes) -> bool:
        """Write `<root>/<key>` whole, only if it does not exist yet; False when it does (another
        writer got there first). Readers never see a partial record."""
        path = f"{self.root}/{key}"
        if not self.remote:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=Path(path).parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.link(tmp, path)  # fails if the name exists: create-only, and atomic
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        try:
            with self.fs.open(path, "xb") as out:  # S3 If-None-Match: *
                out.write(data)
            return True
        except FileExistsError:
            return False

    def read_record(self, key: str) -> bytes:
        return self.fs.cat_file(f"{self.root}/{key}")

    def record_names(self, prefix: str) -> list[str]:
        """Names of the records directly under `<root>/<prefix>`, sorted."""
        folder = f"{self.root}/{prefix}"
        self.fs.invalidate_cache(folder)
        if not self.fs.exists(folder):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)
                      if not p.rsplit("/", 1)[-1].startswith("."))

    # --- helpers -------------------------------------------------------------------------------
    def _key(self, asset: str, version: str) -> str:
        return f"{self.root}/{asset}/{version}"

    def _manifest(self, asset: str, version: str) -> dict[str, Any]:
        cached = (self.local_root or self.cache / "versions") / asset / version / MANIFEST
        if cached.is_file():
            return json.loads(cached.read_text(encoding="utf-8"))
        if self.local_root:
            raise FileNotFoundError(f"{self.url_of(asset, version)}: no {MANIFEST}; not a complete artifact")
        try:
            return json.loads(self.fs.cat_file(f"{self._key(asset, version)}/{MANIFEST}"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.url_of(asset, version)}: no {MANIFEST}; not a complete artifact") from exc

    def _download(self, asset: str, version: str, target: Path) -> None:
        """Fetch a version into the cache, each file checked against its manifest hash, then
        move it into place whole."""
        manifest = self._manifest(asset, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            for name, digest in manifest["files"].items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{self._key(asset, version)}/{name}", str(staging / name))
                if file_sha256(staging / name) != digest:
                    raise OSError(f"{self.url_of(asset, version)}/{name}: content does not match its manifest")
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _assets(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)
                if self.fs.isdir(p) and not p.rsplit("/", 1)[-1].startswith(".")]

    def _listing(self, asset: str) -> list[str]:
        prefix = f"{self.root}/{asset}"
        if not self.fs.exists(prefix):
            return []
        self.fs.invalidate_cache(prefix)
        return [p.rstrip("/") for p in self.fs.ls(prefix, detail=False) if self.fs.isdir(p)]

    def _modified(self, prefix: str) -> float:
        if self.local_root:
            return os.stat(prefix).st_mtime
        times = [info["LastModified"].timestamp() for info in self.fs.find(prefix, detail=True).values()
                 if "LastModified" in info]
        return max(times, default=0.0)


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


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
