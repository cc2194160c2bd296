"""The artifact store on a local folder and on S3 (a test double: moto's server mode on 127.0.0.1):
versions appear whole or not at all, two writers of one version end with one, readers need the
manifest, and `gc` removes what a killed publish left."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import fsspec
import pytest

from llmops_assets.core.storage import MANIFEST, ArtifactStore


@pytest.fixture(params=["folder", "s3"])
def store_url(request, tmp_path):
    if request.param == "folder":
        return str(tmp_path / "artifacts")
    return f"{request.getfixturevalue('s3_bucket')}/artifacts"


def test_a_version_is_published_with_its_manifest_and_read_back_through_a_fresh_cache(store_url, tmp_path):
    store = ArtifactStore(store_url, cache_dir=tmp_path / "cache-writer")
    with store.write("thing", inputs={"up": "v1"}, config={"k": 1}) as out:
        (out.dir / "sub").mkdir()
        (out.dir / "sub" / "a.txt").write_text("hello")
        out.metrics = {"n": 1}
    reader = ArtifactStore(store_url, cache_dir=tmp_path / "cache-reader")  # another machine
    artifact = reader.get("thing", out.version)
    assert (artifact.path / "sub" / "a.txt").read_text() == "hello"
    assert artifact.manifest["inputs"] == {"up": "v1"} and artifact.metrics == {"n": 1}
    assert artifact.url == f"{store_url}/thing/{out.version}"
    assert [a.version for a in reader.versions("thing")] == [out.version]
    assert reader.find("thing", {"up": "v1"}, {"k": 1}).version == out.version
    assert reader.find("thing", {"up": "v2"}, {"k": 1}) is None


def test_a_failed_build_publishes_nothing(store_url, tmp_path):
    store = ArtifactStore(store_url, cache_dir=tmp_path / "cache")
    with pytest.raises(RuntimeError), store.write("thing") as out:
        (out.dir / "half.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("crashed mid-build")
    assert store.versions("thing") == []


PUBLISHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llmops_assets.core.storage import ArtifactStore
    store = ArtifactStore(sys.argv[1], cache_dir=Path(sys.argv[2]))
    with store.write("model") as out:
        for i in range(600):
            (out.dir / f"shard-{i:04d}.bin").write_bytes(bytes([i % 251]) * 65536)
        if store.local_root:
            time.sleep(3600)  # a local publish is one rename: it can only be killed before it
""")


def test_a_publish_killed_halfway_leaves_no_visible_version_and_gc_removes_its_remains(store_url, tmp_path):
    """Killed while building (a folder) or while uploading its files (S3)."""
    fs, root = fsspec.core.url_to_fs(store_url)

    def files_under(prefix):
        fs.invalidate_cache()
        return fs.find(prefix) if fs.exists(prefix) else []

    child = subprocess.Popen([sys.executable, "-c", PUBLISHER, store_url, str(tmp_path / "cache")],
                             env=os.environ.copy())
    deadline = time.monotonic() + 120
    while len(files_under(f"{root}/model")) < 10:
        assert time.monotonic() < deadline and child.poll() is None, "the publisher finished or stalled before the kill"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    leftovers = files_under(f"{root}/model")
    assert 10 <= len(leftovers) and not any(f.endswith(MANIFEST) for f in leftovers), "not killed halfway"
    store = ArtifactStore(store_url, cache_dir=tmp_path / "reader-cache")
    assert store.versions("model") == []
    assert store.gc(min_age_s=3600) == []  # young remains may be a publish in progress: kept
    assert len(store.gc(min_age_s=0)) == 1
    assert files_under(f"{root}/model") == []


def test_two_writers_of_one_version_end_with_one_and_the_loser_reuses_it(store_url, tmp_path):
    start = threading.Barrier(2)
    writers = []

    def publish(name):
        store = ArtifactStore(store_url, cache_dir=tmp_path / name)
        with store.write("adapter", config={"writer": name}) as out:
            for i in range(150):
                (out.dir / f"part-{i:03d}.bin").write_bytes(bytes([i]) * 4096)
            start.wait()  # both publish at once
        writers.append(out)

    threads = [threading.Thread(target=publish, args=(name,)) for name in ("a", "b")]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    assert len(writers) == 2 and writers[0].version == writers[1].version
    assert sorted(w.reused for w in writers) == [False, True]
    store = ArtifactStore(store_url, cache_dir=tmp_path / "reader")
    [only] = store.versions("adapter")
    winner = next(w for w in writers if not w.reused)
    assert only.manifest["config"] == winner.config
    assert len(only.manifest["files"]) == 150 and (only.path / "part-149.bin").read_bytes() == bytes([149]) * 4096


def test_reading_a_version_without_manifest_is_refused(store_url, tmp_path):
    fs, root = fsspec.core.url_to_fs(store_url)
    fs.makedirs(f"{root}/thing/0123456789abcdef", exist_ok=True)
    fs.pipe(f"{root}/thing/0123456789abcdef/weights.bin", b"half")
    store = ArtifactStore(store_url, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no manifest.json; not a complete artifact"):
        store.get("thing", "0123456789abcdef")
    assert store.versions("thing") == []


def test_an_object_store_needs_a_local_cache():
    with pytest.raises(ValueError, match="needs a local cache folder"):
        ArtifactStore("s3://bucket/prefix")
