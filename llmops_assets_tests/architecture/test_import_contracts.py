"""The layers hold (core at the bottom, stages that never import each other, the Dagster face on
top), and the contracts would catch a change that breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `project`, with the contracts in its pyproject.toml."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=project, capture_output=True, text=True,
                          env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.fixture
def copy_of_the_project(tmp_path):
    shutil.copytree(ROOT / "llmops_assets", tmp_path / "llmops_assets",
                    ignore=shutil.ignore_patterns("__pycache__", "seed", "suites"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_a_stage_importing_another_stage_breaks_the_contract(copy_of_the_project):
    _append(copy_of_the_project / "llmops_assets" / "data" / "validate.py",
            "from llmops_assets.training.config import TrainingSettings  # noqa")
    result = lint_imports(copy_of_the_project)
    assert result.returncode != 0
    assert "llmops_assets.data is not allowed to import llmops_assets.training" in result.stdout


def test_core_importing_a_stage_or_dagster_breaks_the_contracts(copy_of_the_project):
    _append(copy_of_the_project / "llmops_assets" / "core" / "rows.py", "import dagster  # noqa")
    _append(copy_of_the_project / "llmops_assets" / "core" / "chat.py",
            "from llmops_assets.evaluation import gates  # noqa")
    result = lint_imports(copy_of_the_project)
    assert result.returncode != 0
    assert "llmops_assets.core is not allowed to import dagster" in result.stdout
    assert "llmops_assets.core is not allowed to import llmops_assets.evaluation" in result.stdout
