import json

import pytest

from llmops_assets.core.storage import ArtifactStore, atomic_write_text
from llmops_assets.settings import ConfigError, load_settings


def test_artifact_is_published_under_its_content_hash_with_a_manifest(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with store.write("thing", inputs={"up": "v1"}, config={"k": 1}) as out:
        (out.dir / "a.txt").write_text("hello")
        out.metrics = {"n": 1}
    artifact = store.get("thing", out.version)
    assert artifact.path == tmp_path / "artifacts" / "thing" / out.version
    assert artifact.manifest["inputs"] == {"up": "v1"} and artifact.metrics == {"n": 1}
    assert set(artifact.manifest["files"]) == {"a.txt"}
    with store.write("thing") as again:
        (again.dir / "a.txt").write_text("hello")
    assert again.version == out.version and len(store.versions("thing")) == 1


def test_a_crash_leaves_no_artifact_that_looks_valid(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with pytest.raises(RuntimeError), store.write("thing") as out:
        (out.dir / "half.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("killed mid-write")
    assert store.versions("thing") == []
    assert list((tmp_path / "artifacts" / "thing").iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "status.json"
    atomic_write_text(path, json.dumps({"v": 1}))
    atomic_write_text(path, json.dumps({"v": 2}))
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_project_config_loads_with_every_gate_threshold():
    settings = load_settings()
    assert settings.stages.data.quality_gate.min_examples == 200
    evaluation_gate = settings.stages.evaluation.quality_gate
    assert evaluation_gate.min_task_accuracy == 0.80 and evaluation_gate.max_safety_failure_rate == 0.05
    assert settings.stages.training.quality_gate.max_final_loss == 0.5
    assert settings.stages.deployment.quality_gate.max_first_token_ms == 500
    assert all(p.is_file() for p in settings.stages.data.sources)


@pytest.mark.parametrize("change, message", [
    ("  split: {train: 0.9, validation: 0.1, test: 0.1}", "must sum to 1"),
    ("  typo_key: 1", "Extra inputs are not permitted"),
])
def test_bad_config_is_rejected_with_the_reason(tmp_path, change, message):
    path = tmp_path / "p.yaml"
    path.write_text(f"domain: {{system_prompt: x}}\nstages:\n data:\n{change}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)
