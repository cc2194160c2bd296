"""The gateway's answers that need no model server: no release yet, bad bodies, keys, rate limits.
(Routing to a real llama.cpp server is in integration/test_pipeline_tiny.py.)"""

import pytest
from fastapi.testclient import TestClient

from llmops_assets.core.request_log import RequestLog, default_url
from llmops_assets.deployment.gateway import create_app
from llmops_assets.settings import load_settings

CHAT = {"messages": [{"role": "user", "content": "Add task: x"}]}


def client(tmp_path, monkeypatch, api_key: str = "", requests_per_minute: int = 600) -> TestClient:
    settings = load_settings()
    monkeypatch.setenv("GATEWAY_TEST_KEY", api_key)
    deployment = settings.stages.deployment.model_copy(update={
        "api_key_env": "GATEWAY_TEST_KEY" if api_key else "",
        "gateway": settings.stages.deployment.gateway.model_copy(update={"requests_per_minute": requests_per_minute})})
    return TestClient(create_app(tmp_path, str(tmp_path / "artifacts"), deployment, settings.domain.system_prompt,
                                 settings.domain.tools_file))


def test_without_a_release_the_gateway_says_so_and_logs_nothing(tmp_path, monkeypatch):
    with client(tmp_path, monkeypatch) as gateway:
        assert gateway.get("/health").status_code == 503
        answer = gateway.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 503 and "no release is served" in answer.json()["error"]["message"]
        assert gateway.get("/v1/models").json()["data"] == []
    assert RequestLog(default_url(tmp_path)).count() == 0


@pytest.mark.parametrize("body", [b"not json", b'{"messages": []}', b'{"messages": "hi"}', b'[1, 2]'])
def test_a_malformed_body_is_a_400_naming_the_problem(tmp_path, monkeypatch, body):
    with client(tmp_path, monkeypatch) as gateway:
        answer = gateway.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"


def test_a_required_key_and_the_rate_limit_are_enforced_per_key(tmp_path, monkeypatch):
    with client(tmp_path, monkeypatch, api_key="secret", requests_per_minute=2) as gateway:
        assert gateway.post("/v1/chat/completions", json=CHAT).status_code == 401
        wrong = gateway.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        key = {"Authorization": "Bearer secret"}
        assert [gateway.post("/v1/chat/completions", json=CHAT, headers=key).status_code for _ in range(3)] == [503, 503, 429]
