"""Shared fixtures: the tiny test profile and a throwaway pipeline home per test module."""

from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CONFIG = FIXTURES / "pipeline_tiny.yaml"


def registry_of(home: Path, store=None):
    """The release registry of a test's pipeline home (its local artifact store by default)."""
    from llmops_assets.core.releases import ReleaseRegistry
    from llmops_assets.core.storage import ArtifactStore

    return ReleaseRegistry(store or ArtifactStore(Path(home) / "artifacts", cache_dir=Path(home) / "cache"))


def stop_servers(home: Path, store=None) -> None:
    """Stop the gateway and every llama.cpp server the releases of a test's pipeline home started."""
    from llmops_assets.deployment import gateway, servers

    gateway.stop(home)
    for release in registry_of(home, store).releases().values():
        if release.pid:
            servers.stop(release.pid)


def gate_count() -> int:
    """Asset checks in the definitions, counted from them (the UI test checks it shows each one)."""
    from llmops_assets.definitions import defs

    return len(defs.resolve_asset_graph().asset_check_keys)


def gate_table(stdout: str) -> dict[str, str]:
    """The verdicts of the gate table the CLI prints, by `asset:check`."""
    verdicts = {"PASS", "FAIL", "WARN", "OFF"}
    rows = [line.split() for line in stdout.splitlines()]
    return {f"{row[0]}:{row[1]}": next(word for word in row[2:] if word in verdicts)
            for row in rows if len(row) > 2 and verdicts & set(row[2:]) and row[0].replace("_", "").isalpha()}


def derived_config(directory: Path, changes: dict, base: Path = TINY_CONFIG) -> Path:
    """A copy of `base` in `directory` with nested `changes` applied (its paths made absolute)."""
    config = yaml.safe_load(base.read_text())
    config["domain"]["tools_file"] = str((base.parent / config["domain"]["tools_file"]).resolve())
    stages = config["stages"]
    stages["data"]["sources"] = [str((base.parent / s).resolve()) for s in stages["data"]["sources"]]
    if "safety_suite" in stages.get("evaluation", {}):
        stages["evaluation"]["safety_suite"] = str((base.parent / stages["evaluation"]["safety_suite"]).resolve())
    training = stages.get("training", {})
    for section, files in (("dpo", "preferences"), ("continued_pretraining", "corpus")):
        if files in training.get(section, {}):
            training[section][files] = [str((base.parent / f).resolve()) for f in training[section][files]]
    _merge(config, changes)
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _merge(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture(scope="session")
def s3_double_server():
    """One S3 test double (moto's server mode on 127.0.0.1) for the whole session: s3fs caches
    its clients per process, so every test talks to the same endpoint."""
    from llmops_assets_tests.s3_double import s3_double

    with s3_double() as environment:
        yield environment


@pytest.fixture(scope="module")
def s3_environment(s3_double_server):
    """The S3 double's endpoint and credentials in the environment for a whole module (for
    module-scoped fixtures); the environment the double's clients need."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_double_server.items():
            patch.setenv(name, value)
        yield s3_double_server


@pytest.fixture
def s3_bucket(s3_double_server, monkeypatch) -> str:
    """A fresh bucket on the S3 double, its credentials and endpoint in the environment; its URL."""
    from llmops_assets_tests.s3_double import new_bucket

    for name, value in s3_double_server.items():
        monkeypatch.setenv(name, value)
    return new_bucket(s3_double_server)


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch):
    monkeypatch.setenv("DAGSTER_DISABLE_TELEMETRY", "1")
