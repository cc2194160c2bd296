"""Safe defaults: the model server stays on this machine unless exposed on purpose with a key,
models are not shipped to a remote Ollama on their own, API keys are sent only when configured
and never in clear text across a network, and a pid read from a file is signalled only while it
is still our server."""

import subprocess
import sys
import time

import pytest

from llmops_assets.core.inference import chat_completion, is_loopback
from llmops_assets.deployment import servers
from llmops_assets.deployment.config import DeploymentSettings
from llmops_assets.deployment.targets import LlamaCppTarget, select_target
from llmops_assets.settings import ConfigError, load_settings
from llmops_assets_tests.conftest import derived_config


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "http://127.0.0.2:8080/v1"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "example.com", "http://192.168.1.4:11434"])
def test_hosts_beyond_this_machine(host):
    assert not is_loopback(host)


def test_an_exposed_server_needs_an_explicit_opt_in_and_a_key(tmp_path):
    config = derived_config(tmp_path, {"stages": {"deployment": {"host": "0.0.0.0"}}})
    with pytest.raises(ConfigError, match="host 0.0.0.0 would expose an unauthenticated model server"):
        load_settings(config)
    with pytest.raises(ValueError, match="allow_remote_clients needs api_key_env"):
        DeploymentSettings(host="0.0.0.0", allow_remote_clients=True)
    assert DeploymentSettings(host="0.0.0.0", allow_remote_clients=True, api_key_env="SERVE_KEY").api_key_env


def test_a_remote_ollama_host_is_not_used_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://192.0.2.10:11434")  # TEST-NET-1: never contacted
    assert isinstance(select_target(DeploymentSettings(server="auto"), tmp_path), LlamaCppTarget)
    with pytest.raises(RuntimeError, match="another machine: the GGUF would be uploaded there"):
        select_target(DeploymentSettings(server="ollama"), tmp_path)


def test_no_api_key_by_default_and_never_over_plain_http_to_another_machine():
    settings = load_settings()
    assert settings.stages.data.synthetic.api_key_env == "" and settings.stages.evaluation.judge.api_key_env == ""
    with pytest.raises(ValueError, match="refusing to send an API key over plain HTTP to http://192.0.2.10"):
        chat_completion("http://192.0.2.10:8000/v1", "m", [{"role": "user", "content": "hi"}], api_key="secret")


def test_a_pid_that_is_no_longer_our_server_is_not_signalled():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert not servers.is_our_server(other.pid)
        assert servers.stop(other.pid) is False
        time.sleep(0.2)
        assert other.poll() is None  # still running: a recycled pid is never killed
    finally:
        other.kill()
        other.wait()
