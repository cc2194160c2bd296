"""The asset graph is pinned: a changed key, dependency, group, check, blocking flag, automation
condition, op tag, job, sensor or schedule fails here until the snapshot is updated on purpose
(`LLMOPS_UPDATE_SNAPSHOT=1 pytest llmops_assets_tests/architecture`)."""

import json
import os
from pathlib import Path

import pytest

from llmops_assets.definitions import build_definitions, defs
from llmops_assets_tests.graph import describe

SNAPSHOT = Path(__file__).parent / "asset_graph.json"
CONTRACT_KEYS = {"raw_examples", "curated_dataset", "base_model", "sft_adapter", "eval_report", "merged_model",
                 "gguf_model", "deployed_model"}


def test_the_asset_graph_matches_its_snapshot():
    current = describe(defs)
    if os.environ.get("LLMOPS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    pinned = json.loads(SNAPSHOT.read_text())
    changed = sorted(k for k in pinned["assets"].keys() | current["assets"].keys()
                     if pinned["assets"].get(k) != current["assets"].get(k))
    assert current == pinned, f"the asset graph changed (assets: {changed}); if intended, update the snapshot"


def test_the_contract_asset_keys_exist_and_every_check_blocks_or_says_why():
    assets = describe(defs)["assets"]
    assert CONTRACT_KEYS <= assets.keys()
    # Every gate blocks; only the checks that report gates configured to warn do not.
    assert all(check["blocking"] != name.endswith("_warnings")
               for asset in assets.values() for name, check in asset["checks"].items())


def test_an_unknown_environment_is_refused_naming_the_known_ones():
    known = r"\['kubernetes', 'local', 'multiprocess'\]"
    with pytest.raises(ValueError, match=rf"LLMOPS_ENVIRONMENT='cluster' is not an environment; choose one of {known}"):
        build_definitions(environment="cluster")
