"""Human review of served answers: the queue (disliked or signalled answers, calls the schema
rejected, prompts in drifted clusters), each entry with its release and that release's lineage;
a reviewer approves, corrects or rejects. The gateway serves the queue as a web page (`/review`)
and as JSON; `llmops review export|import` moves it through Argilla's record format for teams
that review in Argilla. Decisions are stored as feedback with source "review": a correction
becomes a preference pair (it overrules clients' corrections of the same answer), an approval
dismisses clients' complaints about it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from llmops_assets.core.request_log import REVIEW_ACTIONS, RequestLog, review_problem
from llmops_assets.core.tools import ToolCall, ToolSchema

ARGILLA_QUESTIONS = ("decision", "correction", "comment")  # the Argilla dataset's questions, by name
NO_DECISION = "no decision response yet"


def queue_entries(log: RequestLog, releases: dict[int, Any], limit: int = 100) -> list[dict[str, Any]]:
    """What the page shows and the export writes: each waiting request with its release's lineage."""
    entries = []
    for row in log.review_queue(limit):
        release = releases.get(row["release_number"])
        entries.append({
            "request_id": row["request_id"], "received_at": row["received_at"],
            "prompt": [m for m in row["messages"] if m.get("role") != "system"], "answer": row["answer"] or "",
            "reasons": row["reasons"],
            "feedback": [{k: f[k] for k in ("rating", "correction", "comment", "signal")} for f in row["feedback"]],
            "release": {"number": row["release_number"], "version": row["release_version"], "role": row["role"],
                        "lineage": dict(release.inputs) if release else {}}})
    return entries


def store_review(log: RequestLog, body: Any, schema: ToolSchema, reviewer: str) -> tuple[int, dict[str, Any]]:
    """Validate one decision ({"request_id", "action", "correction"?, "comment"?}) and store it:
    (its feedback id, the request it is about). A ValueError or LookupError says why it was
    refused (nothing is stored then)."""
    problem = review_problem(body)
    if problem is None and isinstance(body.get("correction"), dict):
        problem = "; ".join(schema.problems(ToolCall(body["correction"]["name"], body["correction"]["arguments"])))
    if problem:
        raise ValueError(problem)
    answered = log.get(body["request_id"])
    if answered is None or answered["shadow_of"] or answered["probe_id"]:
        raise LookupError(f"no answer with request id {body['request_id']!r} in the request log")
    return log.add_feedback({"request_id": body["request_id"], "received_at": time.time(), "client": reviewer,
                             "source": "review", "rating": REVIEW_ACTIONS[body["action"]],
                             "correction": body.get("correction"), "comment": body.get("comment")}), answered


def to_argilla(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Argilla records (`rg.Record.to_dict()` shape: id, fields, metadata, suggestions, responses,
    vectors, status) for a dataset with text fields prompt, answer, reasons and the questions
    decision (label: approve, reject, correct), correction and comment (text)."""
    return [{
        "id": entry["request_id"],
        "fields": {"prompt": "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in entry["prompt"]),
                   "answer": entry["answer"], "reasons": "; ".join(entry["reasons"])},
        "metadata": {"release_number": entry["release"]["number"], "release_version": entry["release"]["version"],
                     "role": entry["release"]["role"], "received_at": entry["received_at"],
                     "lineage": json.dumps(entry["release"]["lineage"], sort_keys=True)},
        "suggestions": {}, "responses": {}, "vectors": {}, "status": "pending",
    } for entry in entries]


def from_argilla(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(review decisions, skipped records with why) from Argilla records with responses. A
    correction in the record is JSON for a tool call or else a text."""
    decisions, skipped = [], []
    for index, record in enumerate(records):
        where = f"record {index} (id {record.get('id')!r})" if isinstance(record, dict) else f"record {index}"
        if not isinstance(record, dict) or not isinstance(record.get("responses"), dict):
            skipped.append({"record": where, "reason": "not an Argilla record with a responses object"})
            continue
        answers = {name: _first_value(record["responses"].get(name)) for name in ARGILLA_QUESTIONS}
        if answers["decision"] is None:
            skipped.append({"record": where, "reason": NO_DECISION})
            continue
        decision = {"request_id": record.get("id"), "action": answers["decision"]}
        if answers["correction"] not in (None, ""):
            decision["correction"] = _correction(answers["correction"])
        if answers["comment"] not in (None, ""):
            decision["comment"] = answers["comment"]
        problem = review_problem(decision)
        if problem:
            skipped.append({"record": where, "reason": problem})
        else:
            decisions.append(decision)
    return decisions, skipped


def _first_value(responses: Any) -> Any:
    """The first submitted response's value (Argilla keeps one list of responses per question)."""
    if isinstance(responses, list):
        for response in responses:
            if isinstance(response, dict) and response.get("status", "submitted") == "submitted":
                return response.get("value")
    return None


def _correction(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Review queue</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
.entry { border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin: 1em 0; }
.reasons { color: #a40; } .lineage { color: #666; font-size: 12px; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .5em; }
textarea { width: 100%; height: 3.5em; font-family: monospace; } .error { color: #c00; } button { margin-right: .5em; }
</style></head>
<body>
<h1>Review queue</h1>
<p>Answers clients disliked or signalled, tool calls the schema rejected, prompts in drifted clusters.
Approve a right answer, reject a wrong one, or correct it (a tool call as JSON
<code>{"name": ..., "arguments": {...}}</code>, or a text). Corrections become preference pairs for DPO.</p>
<label>API key <input id="key" type="password" placeholder="if the gateway needs one"></label>
<p id="status"></p>
<div id="queue"></div>
<script>
const key = document.getElementById("key");
key.value = localStorage.getItem("llmops-review-key") || "";
key.onchange = () => { localStorage.setItem("llmops-review-key", key.value); load(); };
function headers() {
  const h = {"Content-Type": "application/json"};
  if (key.value) h["Authorization"] = "Bearer " + key.value;
  return h;
}
function text(tag, content, cls) {
  const e = document.createElement(tag); e.textContent = content; if (cls) e.className = cls; return e;
}
async function decide(entry, action, box, card) {
  const body = {request_id: entry.request_id, action: action};
  if (action === "correct") {
    const raw = box.value.trim();
    try { const parsed = JSON.parse(raw); body.correction = (parsed && typeof parsed === "object") ? parsed : raw; }
    catch (e) { body.correction = raw; }
  }
  const reply = await fetch("/v1/review", {method: "POST", headers: headers(), body: JSON.stringify(body)});
  const result = await reply.json();
  if (reply.ok) { card.remove(); document.getElementById("status").textContent = "stored: " + action + " " + entry.request_id; }
  else { card.querySelector(".error").textContent = result.error.message; }
}
async function load() {
  const reply = await fetch("/v1/review/queue", {headers: headers()});
  const queue = document.getElementById("queue"); queue.replaceChildren();
  const result = await reply.json();
  if (!reply.ok) { document.getElementById("status").textContent = result.error.message; return; }
  document.getElementById("status").textContent = result.data.length + " waiting";
  for (const entry of result.data) {
    const card = document.createElement("div"); card.className = "entry"; card.dataset.requestId = entry.request_id;
    card.append(text("div", entry.reasons.join("; "), "reasons"));
    card.append(text("pre", entry.prompt.map(m => m.role + ": " + (m.content || "")).join("\\n"), "prompt"));
    card.append(text("pre", entry.answer || "(empty answer)", "answer"));
    const r = entry.release;
    card.append(text("div", "request " + entry.request_id + " · release " + r.number + " (" + r.role + ", " + r.version
      + ") · " + Object.entries(r.lineage).map(([k, v]) => k + " " + v).join(", "), "lineage"));
    const box = document.createElement("textarea"); box.placeholder = "correction"; card.append(box);
    for (const action of ["approve", "reject", "correct"]) {
      const button = text("button", action); button.onclick = () => decide(entry, action, box, card); card.append(button);
    }
    card.append(text("div", "", "error"));
    queue.append(card);
  }
}
load();
</script>
</body></html>
"""
