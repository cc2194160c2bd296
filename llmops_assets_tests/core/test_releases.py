"""The release registry in the artifact store (a folder, or S3 through moto's server mode, a test
double): roles and traffic as an append-only event history that concurrent writers never lose,
the champion, rollback targets, and deployment_status.json as a view."""

import json
import threading

import pytest

from llmops_assets.core.releases import STATUS_FILE, Release, ReleaseRegistry, read_status
from llmops_assets.core.storage import ArtifactStore


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    if request.param == "folder":
        return ArtifactStore(tmp_path / "artifacts")
    return ArtifactStore(f"{request.getfixturevalue('s3_bucket')}/artifacts", cache_dir=tmp_path / "cache")


def release(number: int, version: str, **changes) -> Release:
    return Release(version=version, model_sha256="ab" * 32, quantization="Q8_0", server="llamacpp",
                   endpoint=f"http://127.0.0.1:{9000 + number}/v1", model="m", model_name="m", model_path="/x.gguf",
                   release_number=number, deployed_at=float(number), inputs={"eval_report": f"e{number}"}, **changes)


def test_roles_change_through_events_and_the_champion_is_the_serving_one(store, tmp_path):
    registry = ReleaseRegistry(store)
    assert registry.champion() is None and registry.events() == []
    registry.register(release(1, "v1"))
    registry.register(release(2, "v2", previous_version="v1"))
    registry.set_role(1, "retired", 0.0, reason="replaced by release 2")
    again = ReleaseRegistry(store)  # another process reading the same store
    assert again.champion().release_number == 2
    assert [(e.seq, e.kind, e.release_number) for e in again.events()] == [
        (1, "registered", 1), (2, "registered", 2), (3, "role_changed", 1)]
    assert again.releases()[1].role == "retired" and [r.release_number for r in again.live()] == [2]
    again.mark_stopped(2, "llmops serve stop")
    assert ReleaseRegistry(store).champion() is None
    again.write_views(tmp_path)
    view = json.loads((tmp_path / STATUS_FILE).read_text())
    assert view["version"] == "v2" and view["status"] == "stopped" and read_status(tmp_path) == view


def test_rollback_targets_are_releases_that_were_served(store):
    registry = ReleaseRegistry(store)
    registry.register(release(1, "v1"))
    registry.register(release(2, "v2", previous_version="v1"))
    registry.set_role(1, "retired", 0.0)
    assert registry.rollback_target("previous").release_number == 1
    assert registry.rollback_target("v2").release_number == 2
    registry.reject("v3", "first_token_ms 900 > 500", {"pid": 1})
    with pytest.raises(ValueError, match="'v3' was never served; releases that were: v1, v2"):
        registry.rollback_target("v3")


def test_concurrent_writers_never_lose_an_event(store):
    registry = ReleaseRegistry(store)
    registry.register(release(1, "v1"))
    start = threading.Barrier(4)

    def flip(writer: int):
        own = ReleaseRegistry(store)
        start.wait()
        for _ in range(5):
            own.set_role(1, "canary", writer / 10)

    threads = [threading.Thread(target=flip, args=(w,)) for w in range(4)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    events = ReleaseRegistry(store).events()
    assert [e.seq for e in events] == list(range(1, 22))
    assert sorted(e.release.traffic_weight for e in events[1:]) == sorted([w / 10 for w in range(4)] * 5)
