"""The review queue: what waits for a person, the gateway's page and API, Argilla's record format
both ways, and the page in a real Chromium (approve, correct, a correction the schema refuses)."""

import json
import shutil
import socket
import threading
import time

import pytest

from llmops_assets.cli import main
from llmops_assets.core.request_log import RequestLog, default_url
from llmops_assets.deployment import review
from llmops_assets_tests.deployment.test_gateway import client, logged_request
from llmops_assets_tests.operations.test_webserver import CHROMIUM, CHROMIUM_FLAGS

INVALID = '{"name": "delete_task", "arguments": {"task_id": "four"}}'


def queue_of_four(home) -> RequestLog:
    """r1 disliked, r2 a call the schema rejects, r3 flagged by drift, r4 liked: r1-r3 wait."""
    for number in range(1, 5):
        logged_request(home, f"r{number}", received_at=float(number),
                       **({"answer": INVALID, "tool_call_valid": False} if number == 2 else {"tool_call_valid": True}))
    logged_request(home, "probe", probe_id="p1", tool_call_valid=False)  # probes are not client answers
    log = RequestLog(default_url(home))
    log.add_feedback({"request_id": "r1", "received_at": 5.0, "client": "c", "rating": -1, "signal": "retried"})
    log.add_feedback({"request_id": "r4", "received_at": 5.0, "client": "c", "rating": 1})
    assert log.flag_for_review({"r3": "drifted cluster 2 (live share 0.40 vs training 0.02)"}) == 1
    assert log.flag_for_review({"r3": "again"}) == 0  # a request keeps its first reason
    return log


def test_the_queue_holds_complaints_invalid_calls_and_drifted_prompts_until_reviewed(tmp_path):
    log = queue_of_four(tmp_path)
    queue = {row["request_id"]: row["reasons"] for row in log.review_queue()}
    assert queue == {"r3": ["drifted cluster 2 (live share 0.40 vs training 0.02)"],
                     "r2": ["the tool call breaks the schema"],
                     "r1": ["a client disliked the answer", "implicit signal: retried"]}
    assert [row["request_id"] for row in log.review_queue()] == ["r3", "r2", "r1"]  # newest first
    log.add_feedback({"request_id": "r1", "received_at": 6.0, "client": "review:x", "source": "review", "rating": 1})
    assert [row["request_id"] for row in log.review_queue()] == ["r3", "r2"]


@pytest.mark.parametrize("body, status, says", [
    ({"request_id": "r1", "action": "like"}, 400, "action must be one of"),
    ({"request_id": "r1", "action": "approve", "correction": "x"}, 400, "only with it"),
    ({"request_id": "r1", "action": "correct"}, 400, "only with it"),
    ({"request_id": "r1", "action": "correct", "correction": {"name": "delete_task", "arguments": {"task_id": "x"}}},
     400, "task_id"),
    ({"request_id": "r1", "action": "correct", "correction": {"name": "drop_all", "arguments": {}}}, 400, "drop_all"),
    ({"request_id": "nope", "action": "approve"}, 404, "no answer with request id 'nope'"),
    ({"request_id": "r1", "action": "approve", "score": 1}, 400, "unknown fields"),
])
def test_a_bad_review_decision_is_refused_naming_why_and_stores_nothing(tmp_path, monkeypatch, body, status, says):
    queue_of_four(tmp_path)
    with client(tmp_path, monkeypatch) as gateway:
        answer = gateway.post("/v1/review", json=body)
    assert answer.status_code == status and says in answer.json()["error"]["message"]
    assert [f for f in RequestLog(default_url(tmp_path)).feedback() if f["source"] == "review"] == []


def test_the_gateway_serves_the_queue_and_stores_decisions_behind_its_key(tmp_path, monkeypatch):
    queue_of_four(tmp_path)
    with client(tmp_path, monkeypatch, api_key="secret") as gateway:
        assert "Review queue" in gateway.get("/review").text
        assert gateway.get("/v1/review/queue").status_code == 401
        assert gateway.post("/v1/review", json={"request_id": "r1", "action": "approve"}).status_code == 401
        key = {"Authorization": "Bearer secret"}
        entries = gateway.get("/v1/review/queue", headers=key).json()["data"]
        assert [e["request_id"] for e in entries] == ["r3", "r2", "r1"]
        assert entries[2]["release"] == {"number": 1, "version": "v1", "role": "champion", "lineage": {}}
        assert entries[2]["prompt"] == [{"role": "user", "content": "Delete task 4"}]
        fix = {"name": "delete_task", "arguments": {"task_id": 4}}
        stored = gateway.post("/v1/review", json={"request_id": "r2", "action": "correct", "correction": fix},
                              headers=key)
        assert stored.status_code == 201
        assert [e["request_id"] for e in gateway.get("/v1/review/queue", headers=key).json()["data"]] == ["r3", "r1"]
    [decision] = RequestLog(default_url(tmp_path)).feedback("r2")
    assert (decision["source"], decision["rating"], decision["correction"]) == ("review", -1, fix)
    assert decision["client"].startswith("review:")


def test_argilla_records_go_out_and_decisions_come_back(tmp_path, monkeypatch):
    """`llmops review export|import` through Argilla's record shape; an undecided record waits, a
    refused one is named and the valid ones are still stored."""
    queue_of_four(tmp_path)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path))
    exported = tmp_path / "records.json"
    assert main(["review", "export", str(exported)]) == 0
    records = json.loads(exported.read_text())
    assert [r["id"] for r in records] == ["r3", "r2", "r1"]
    assert set(records[0]) == {"id", "fields", "metadata", "suggestions", "responses", "vectors", "status"}
    assert records[1]["fields"] == {"prompt": "user: Delete task 4", "answer": INVALID,
                                    "reasons": "the tool call breaks the schema"}
    # What an Argilla annotator's submitted responses look like in the exported dataset:
    records[1]["responses"] = {
        "decision": [{"value": "correct", "user_id": "u1", "status": "submitted"}],
        "correction": [{"value": '{"name": "delete_task", "arguments": {"task_id": 4}}', "user_id": "u1",
                        "status": "submitted"}]}
    records[2]["responses"] = {"decision": [{"value": "maybe", "user_id": "u1", "status": "submitted"}]}
    records[0]["responses"] = {"decision": [{"value": "approve", "user_id": "u1", "status": "draft"}]}  # not submitted
    exported.write_text(json.dumps(records))
    assert main(["review", "import", str(exported)]) == 1  # one refused record fails the command
    log = RequestLog(default_url(tmp_path))
    [decision] = [f for f in log.feedback() if f["source"] == "review"]
    assert decision["request_id"] == "r2" and decision["correction"] == {"name": "delete_task",
                                                                         "arguments": {"task_id": 4}}
    assert [row["request_id"] for row in log.review_queue()] == ["r3", "r1"]
    decisions, skipped = review.from_argilla(records)
    assert [s["reason"] for s in skipped] == [review.NO_DECISION, "action must be one of ['approve', 'reject', "
                                                                  "'correct']"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_gateway(tmp_path):
    """The gateway app under a real uvicorn on 127.0.0.1 (no model server is needed for review)."""
    import uvicorn

    from llmops_assets.deployment.gateway import create_app
    from llmops_assets.settings import load_settings

    queue_of_four(tmp_path)
    settings = load_settings()
    app = create_app(tmp_path, str(tmp_path / "artifacts"), settings.stages.deployment, settings.domain.system_prompt,
                     settings.domain.tools_file)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}", RequestLog(default_url(tmp_path))
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
def test_a_reviewer_approves_and_corrects_in_chromium(served_gateway):
    from playwright.sync_api import expect, sync_playwright

    url, log = served_gateway
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/review")
            expect(page.locator("#status")).to_have_text("3 waiting")
            drifted = page.locator('.entry[data-request-id="r3"]')
            expect(drifted.locator(".reasons")).to_contain_text("drifted cluster 2")
            expect(drifted.locator(".lineage")).to_contain_text("release 1 (champion, v1)")
            drifted.get_by_role("button", name="approve").click()
            expect(drifted).to_have_count(0)
            invalid = page.locator('.entry[data-request-id="r2"]')
            expect(invalid.locator(".answer")).to_have_text(INVALID)
            invalid.locator("textarea").fill('{"name": "delete_task", "arguments": {"task_id": "four"}}')
            invalid.get_by_role("button", name="correct").click()
            expect(invalid.locator(".error")).to_contain_text("task_id")  # refused, still queued
            invalid.locator("textarea").fill('{"name": "delete_task", "arguments": {"task_id": 4}}')
            invalid.get_by_role("button", name="correct").click()
            expect(invalid).to_have_count(0)
            expect(page.locator("#status")).to_have_text("stored: correct r2")
        finally:
            browser.close()
    reviews = {f["request_id"]: f for f in log.feedback() if f["source"] == "review"}
    assert reviews["r3"]["rating"] == 1 and reviews["r2"]["correction"] == {"name": "delete_task",
                                                                             "arguments": {"task_id": 4}}
    assert [row["request_id"] for row in log.review_queue()] == ["r1"]
