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


def logged_request(home, request_id: str, **extra) -> None:
    """A client request as the gateway logs it (the feedback endpoint looks answers up there)."""
    RequestLog(default_url(home)).record({
        "request_id": request_id, "received_at": 1.0, "client": "anonymous", "release_number": 1,
        "release_version": "v1", "role": "champion", "model": "m", "status": 200,
        "messages": [{"role": "user", "content": "Delete task 4"}], "answer": '{"name": "list_tasks", "arguments": {}}',
        **extra})


@pytest.mark.parametrize("body, says", [
    ({"rating": 1}, "request_id"),
    ({"request_id": "r1", "rating": 5}, "rating must be"),
    ({"request_id": "r1", "rating": True}, "rating must be"),
    ({"request_id": "r1", "correction": {"name": "delete_task"}}, "correction must be"),
    ({"request_id": "r1", "correction": ""}, "correction must be"),
    ({"request_id": "r1", "signal": "liked"}, "signal must be"),
    ({"request_id": "r1", "comment": "only a comment"}, "say something"),
    ({"request_id": "r1", "rating": 1, "score": 3}, "unknown fields"),
    ([1, 2], "JSON object"),
])
def test_malformed_feedback_is_a_400_naming_the_problem_and_stores_nothing(tmp_path, monkeypatch, body, says):
    logged_request(tmp_path, "r1")
    with client(tmp_path, monkeypatch) as gateway:
        answer = gateway.post("/v1/feedback", json=body)
    assert answer.status_code == 400 and says in answer.json()["error"]["message"]
    assert RequestLog(default_url(tmp_path)).feedback() == []


def test_feedback_on_an_unknown_or_internal_request_is_a_404_and_on_an_answer_is_stored(tmp_path, monkeypatch):
    logged_request(tmp_path, "r1")
    logged_request(tmp_path, "copy", shadow_of="r1", role="shadow")  # a shadow's answer was never seen by anyone
    with client(tmp_path, monkeypatch) as gateway:
        for unknown in ("nope", "copy"):
            missing = gateway.post("/v1/feedback", json={"request_id": unknown, "rating": -1})
            assert missing.status_code == 404 and unknown in missing.json()["error"]["message"]
        correction = {"name": "delete_task", "arguments": {"task_id": 4}}
        stored = gateway.post("/v1/feedback", json={"request_id": "r1", "rating": -1, "correction": correction,
                                                     "comment": "wrong tool"})
        assert stored.status_code == 201
        assert gateway.post("/v1/feedback", json={"request_id": "r1", "signal": "retried"}).status_code == 201
        assert 'llmops_gateway_feedback_total{kind="correction",release="v1",role="champion"} 1.0' in \
            gateway.get("/metrics").text
    first, second = RequestLog(default_url(tmp_path)).feedback()
    assert first["feedback_id"] == stored.json()["feedback_id"] and first["correction"] == correction
    assert first["answer"] == '{"name": "list_tasks", "arguments": {}}' and first["client"] == "anonymous"
    assert second["signal"] == "retried" and second["rating"] is None
