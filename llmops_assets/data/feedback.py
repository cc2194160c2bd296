"""Preference pairs from feedback on served answers (the gateway's `POST /v1/feedback`).

chosen = the user's correction, or an answer approved (rating 1) for the same request as a
disliked one (rating -1); rejected = the disliked or corrected answer, as the model wrote it.
Every pair is checked like a training row (the tool schema) and against the known failure modes
of preference data; each feedback item becomes a pair or is quarantined with its reason:
- a correction the schema rejects, or one equal to the answer after normalization;
- a pair already made (the same request, chosen and rejected);
- a request that is in the test split or the safety suite (the pair would leak into evaluation);
- beyond `max_pairs_per_client` from one client (a flood from one key cannot steer the model);
- a client's correction of an answer a reviewer approved or corrected (the review decides).
Reviewers' decisions (source "review", from the review queue) are trusted: no per-client cap.
The newest `held_out_share` of the pairs (by feedback time) is held out for DPO's evaluation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from llmops_assets.core.chat import parse_tool_call, tool_calls_of
from llmops_assets.core.examples import pair_problem
from llmops_assets.core.rows import example_id, quarantine_entry
from llmops_assets.core.statistics import binomial_bounds
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.config import FeedbackSettings
from llmops_assets.data.curate import normalized_text


def build_pairs(feedback: list[dict[str, Any]], schema: ToolSchema, settings: FeedbackSettings,
                evaluation_requests: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs in TRL's conversational shape, each with its split and origin; quarantined items).
    `feedback`: the request log's feedback rows joined with their requests, oldest first;
    `evaluation_requests`: the normalized requests of the test split and the safety suite."""
    candidates, quarantined = [], []
    reviewed = {i["request_id"]: i for i in feedback if _reviewed(i) and (i["rating"] == 1 or i["correction"])}
    for item in feedback:
        origin = f"feedback {item['feedback_id']} on request {item['request_id']}"
        if item["correction"] is None:
            continue
        pair = _pair(item["messages"], _answer_message(item["correction"]), item["answer"])
        review = None if _reviewed(item) else reviewed.get(item["request_id"])
        reason = (review and f"a reviewer {'approved' if review['rating'] == 1 else 'corrected'} the answer this "
                             f"corrects (feedback {review['feedback_id']})") or \
            pair_problem(pair, schema) or _same_call(item["correction"], item["answer"], schema)
        if reason:
            quarantined.append(quarantine_entry(origin, reason, _raw(item)))
        else:
            candidates.append((item, origin, pair))
    candidates += _approved_against_disliked(feedback, schema)
    pairs, seen, per_client = [], set(), Counter()
    for item, origin, pair in sorted(candidates, key=lambda c: c[0]["received_at"]):
        request = normalized_text(pair["prompt"])
        key = (request, normalized_text(pair["chosen"]), normalized_text(pair["rejected"]))
        if key in seen:
            reason = "the same pair (request, chosen and rejected) came before"
        elif request in evaluation_requests:
            reason = "the request is in the test split or the safety suite: a pair on it would leak into evaluation"
        elif not _reviewed(item) and per_client[item["client"]] >= settings.max_pairs_per_client:
            reason = f"client {item['client']} already gave {settings.max_pairs_per_client} pairs (max_pairs_per_client)"
        else:
            reason = None
        if reason:
            quarantined.append(quarantine_entry(origin, reason, _raw(item)))
            continue
        seen.add(key)
        per_client[item["client"]] += 1
        pairs.append({**pair, "origin": origin, "feedback_id": item["feedback_id"], "request_id": item["request_id"],
                      "received_at": item["received_at"]})
    held_out = max(1, round(len(pairs) * settings.held_out_share)) if pairs else 0
    for index, pair in enumerate(pairs):
        pair["split"] = "held_out" if index >= len(pairs) - held_out else "train"
    return pairs, quarantined


def correction_examples(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Corrected tool calls as SFT rows (the request and the right call) for `raw_examples`,
    each with the pair's origin; text corrections stay preference data only."""
    return [{"id": example_id(p["prompt"] + p["chosen"]), "origin": p["origin"], "messages": p["prompt"] + p["chosen"]}
            for p in pairs if p["chosen"][0].get("tool_calls")]


def _reviewed(item: dict[str, Any]) -> bool:
    return item.get("source") == "review"


def bias_report(pairs: list[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """How often the chosen answer is the longer one, or a tool call against a text: if nearly
    always, DPO can learn length or format instead of correctness. With exact bounds."""
    n = len(pairs)
    longer = sum(len(_text(p["chosen"])) > len(_text(p["rejected"])) for p in pairs)
    format_only = sum(bool(p["chosen"][0].get("tool_calls")) and parse_tool_call(_text(p["rejected"])) is None
                      for p in pairs)
    return {"pairs": n, "chosen_longer": longer, "chosen_longer_share": longer / n if n else None,
            "chosen_longer_lower_bound": binomial_bounds(longer, n, confidence)[0] if n else None,
            "call_against_text": format_only}


def _pair(messages: list[dict[str, Any]], chosen: dict[str, Any], answer: str | None) -> dict[str, Any]:
    prompt = [m for m in messages if m.get("role") != "system"]
    return {"prompt": prompt, "chosen": [chosen], "rejected": [{"role": "assistant", "content": answer or ""}]}


def _answer_message(correction: Any) -> dict[str, Any]:
    """A correction as an assistant message: a tool call, or a text."""
    if isinstance(correction, dict):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": correction["name"], "arguments": correction["arguments"]}}]}
    return {"role": "assistant", "content": str(correction)}


def _same_call(correction: Any, answer: str | None, schema: ToolSchema) -> str | None:
    if not isinstance(correction, dict):
        return None
    answered = parse_tool_call(answer or "")
    wanted = parse_tool_call(_text([_answer_message(correction)]))
    if answered is not None and wanted is not None and schema.normalize(answered) == schema.normalize(wanted):
        return "the correction is the answer it corrects (after normalization)"
    return None


def _approved_against_disliked(feedback: list[dict[str, Any]], schema: ToolSchema) -> list[tuple]:
    """(item, origin, pair) for each request answered once approved and once, differently, disliked."""
    by_request: dict[str, dict[int, dict]] = {}
    for item in feedback:
        if item["rating"] in (1, -1) and item["correction"] is None and item["answer"]:
            by_request.setdefault(normalized_text([m for m in item["messages"] if m.get("role") != "system"]),
                                  {})[item["rating"]] = item
    found = []
    for rated in by_request.values():
        good, bad = rated.get(1), rated.get(-1)
        if good and bad and good["answer"] != bad["answer"]:
            call = parse_tool_call(good["answer"])
            chosen = _answer_message({"name": call.name, "arguments": call.arguments} if call else good["answer"])
            pair = _pair(bad["messages"], chosen, bad["answer"])
            if pair_problem(pair, schema) is None:
                found.append((bad, f"feedback {good['feedback_id']} (approved) against {bad['feedback_id']} "
                                   f"(disliked)", pair))
    return found


def _text(messages: list[dict[str, Any]]) -> str:
    """An answer message as the model writes it: its text, or its calls as JSON."""
    return messages[0].get("content") or " ".join(call.to_json() for call in tool_calls_of(messages[0]))


def _raw(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item.get(k) for k in ("feedback_id", "request_id", "client", "rating", "correction", "comment")}
