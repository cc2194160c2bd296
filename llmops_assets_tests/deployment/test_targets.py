"""Where a release is served, as configured: `server: ollama` is a valid choice (README documents
it), it reaches the Ollama server at OLLAMA_HOST, and without one it says what to do."""

import socket

import pytest
import yaml

from llmops_assets.deployment.targets import LlamaCppTarget, OllamaTarget, select_target
from llmops_assets.settings import load_settings
from llmops_assets_tests.conftest import derived_config
from llmops_assets_tests.ollama_double import OllamaDouble


@pytest.fixture
def ollama_settings(tmp_path):
    config = derived_config(tmp_path, {"stages": {"deployment": {"server": "ollama"}}})
    assert yaml.safe_load(config.read_text())["stages"]["deployment"]["server"] == "ollama"
    return load_settings(config).stages.deployment


def test_server_ollama_selects_the_ollama_server_that_answers(ollama_settings, tmp_path, monkeypatch):
    with OllamaDouble() as double:
        monkeypatch.setenv("OLLAMA_HOST", double.host)
        target = select_target(ollama_settings, tmp_path)
    assert isinstance(target, OllamaTarget)


def test_server_ollama_without_a_server_fails_saying_what_to_do(ollama_settings, tmp_path, monkeypatch):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{unused.getsockname()[1]}")
        with pytest.raises(RuntimeError, match=r"server is ollama, but no Ollama server answers .*ollama serve"):
            select_target(ollama_settings, tmp_path)


def test_server_llamacpp_never_asks_ollama(tmp_path, monkeypatch):
    settings = load_settings(derived_config(tmp_path, {"stages": {"deployment": {"server": "llamacpp"}}}))
    with OllamaDouble() as double:
        monkeypatch.setenv("OLLAMA_HOST", double.host)
        assert isinstance(select_target(settings.stages.deployment, tmp_path), LlamaCppTarget)
        assert double.requests == []
