"""The real `dagster-webserver`: its GraphQL asset graph matches the definitions, headless
Chromium shows every asset and gate in the lineage (a screenshot is kept for people to see), and
after a run each step's cost and the hyperparameter study's plots on the asset pages."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmops_assets.definitions import defs
from llmops_assets_tests.conftest import TINY_CONFIG, derived_config, gate_count, stop_servers
from llmops_assets_tests.graph import describe
from llmops_assets_tests.operations.processes import graphql, instance_env, webserver

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("LLMOPS_SCREENSHOTS", Path(__file__).parents[2] / ".llmops" / "screenshots"))
# As root on a machine with no outside network: no sandbox, no GPU, no background connections.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ASSET_GRAPH = """{ assetNodes { assetKey { path } groupName dependencyKeys { path }
  automationCondition { label }
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    env = instance_env(root, TINY_CONFIG)
    with webserver(root, env) as url:
        yield SimpleNamespace(url=url, env=env, root=root)
    stop_servers(root / "llmops")


def expected_graph() -> dict[str, dict]:
    return {
        key: {"group": asset["group"], "deps": set(asset["deps"]),
              "checks": {(name, check["blocking"]) for name, check in asset["checks"].items()},
              "automated": asset["automation"] is not None}
        for key, asset in describe(defs)["assets"].items()
    }


def test_graphql_asset_graph_matches_the_definitions(dagster_ui):
    nodes = graphql(dagster_ui.url, ASSET_GRAPH)["assetNodes"]
    served = {
        "/".join(n["assetKey"]["path"]): {
            "group": n["groupName"],
            "deps": {"/".join(d["path"]) for d in n["dependencyKeys"]},
            "checks": {(c["name"], c["blocking"]) for c in n["assetChecksOrError"]["checks"]},
            "automated": n["automationCondition"] is not None,
        } for n in nodes
    }
    assert served == expected_graph()
    assert all(blocking != name.endswith("_warnings") for node in served.values() for name, blocking in node["checks"])
    assert sum(len(node["checks"]) for node in served.values()) == gate_count()


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
def test_lineage_in_the_browser_shows_every_asset_and_gate(dagster_ui):
    from playwright.sync_api import sync_playwright

    expected = expected_graph()
    graphql(dagster_ui.url, "mutation { setNuxSeen }")  # the first-visit modal would cover the graph
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1300})
            page.goto(f"{dagster_ui.url}/asset-groups", wait_until="networkidle")
            # The global lineage opens with every group collapsed: graph settings -> Expand all groups.
            expect_count(page.locator('[aria-label="unfold_more"]'), 4)
            page.locator('[aria-label="settings"]').last.click()
            page.get_by_role("menuitem", name="Expand all groups").click()
            page.keyboard.press("Escape")
            expect_count(page.locator('[aria-label="unfold_more"]'), 0)
            graph = page.locator("[data-svg-viewport]")
            for asset in expected:
                expect_visible(graph.get_by_text(asset, exact=True))
            page.wait_for_timeout(500)  # let the closed menu fade out of the picture
            page.screenshot(path=str(SCREENSHOTS / "lineage.png"))
            for asset, node in expected.items():
                if not node["checks"]:
                    continue
                page.goto(f"{dagster_ui.url}/assets/{asset}?view=checks", wait_until="networkidle")
                expect_visible(page.get_by_text(f"Checks ({len(node['checks'])})"))
                for name, _ in node["checks"]:
                    expect_visible(page.get_by_text(name, exact=True).first)
                blocking = sorted(name for name, blocks in node["checks"] if blocks)
                if blocking:  # drift_report has only a warning
                    page.get_by_text(blocking[0], exact=True).first.click()
                    expect_visible(page.get_by_text("This is a blocking asset check."))
        finally:
            browser.close()


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
def test_the_ui_shows_each_steps_cost_and_the_search(dagster_ui, tmp_path):
    """`llmops run` with a two-trial search into the UI's instance; the asset pages show the cost
    metadata of a step and the study's best values and plots."""
    from playwright.sync_api import sync_playwright

    search = {"enabled": True, "trials": 2, "max_steps": [6, 12], "startup_trials": 2}
    config = derived_config(tmp_path, {"stages": {"training": {"hpo": search}}})
    done = subprocess.run([sys.executable, "-m", "llmops_assets.cli", "run"], env=dagster_ui.env | {"LLMOPS_CONFIG": str(config)},
                          cwd=dagster_ui.root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1300})
            page.goto(f"{dagster_ui.url}/assets/sft_adapter?view=events", wait_until="networkidle")
            if page.get_by_role("button", name="Skip").is_visible():  # the first-visit community dialog
                page.get_by_role("button", name="Skip").click()
            for entry in ("cost", "cpu_seconds", "gpu_seconds", "wall_seconds"):
                expect_visible(page.get_by_text(entry, exact=True).first)
            page.goto(f"{dagster_ui.url}/assets/hpo_study?view=events", wait_until="networkidle")
            for entry in ("best_params", "optimization_history", "param_importances", "trial_table"):
                expect_visible(page.get_by_text(entry, exact=True).first)
            # A plot is markdown: the metadata table opens it in a dialog.
            page.get_by_role("row", name=re.compile("^optimization_history")).get_by_text("[Show Markdown]").click()
            expect_visible(page.locator('img[alt="optimization_history"]').first)
            page.screenshot(path=str(SCREENSHOTS / "hpo_study.png"))
        finally:
            browser.close()


def expect_visible(locator):
    from playwright.sync_api import expect

    expect(locator).to_be_visible(timeout=30_000)


def expect_count(locator, count: int):
    from playwright.sync_api import expect

    expect(locator).to_have_count(count, timeout=30_000)
