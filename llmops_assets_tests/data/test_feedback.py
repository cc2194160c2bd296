"""Feedback to preference pairs: every item becomes a valid pair or is quarantined with its reason,
and the known ways to poison preference data (schema-breaking corrections, floods from one key,
repeats, evaluation prompts) are stopped."""

import pytest

from llmops_assets.core.examples import pair_problem
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.config import FeedbackSettings
from llmops_assets.data.curate import normalized_text
from llmops_assets.data.feedback import bias_report, build_pairs
from llmops_assets.settings import load_settings

WRONG = '{"name": "list_tasks", "arguments": {}}'


@pytest.fixture
def schema():
    return ToolSchema.from_file(load_settings().domain.tools_file)


def item(number: int, request: str, correction=None, answer: str = WRONG, client: str = "a", rating=None):
    return {"feedback_id": number, "request_id": f"r{number}", "received_at": 100.0 + number, "client": client,
            "rating": rating, "correction": correction, "comment": None, "signal": None, "answer": answer,
            "messages": [{"role": "system", "content": "Answer with one JSON tool call."},
                         {"role": "user", "content": request}]}


def delete(task: int) -> dict:
    return {"name": "delete_task", "arguments": {"task_id": task}}


def test_corrections_become_pairs_and_each_poisoned_item_is_quarantined_with_its_reason(schema):
    feedback = [
        item(1, "remove task 4", delete(4)),
        item(2, "remove task 5", {"name": "delete_task", "arguments": {"task_id": "five"}}),  # breaks the schema
        item(3, "remove task 6", {"name": "drop_table", "arguments": {}}),  # no such tool
        item(4, "show my tasks", {"name": "list_tasks", "arguments": {}}),  # the answer it corrects
        item(5, "remove task 4", delete(4)),  # the same pair again
        item(6, "Delete task 17", delete(17)),  # a test-split request
        item(7, "Is task 9 done?", "I can only add, list, complete or delete tasks."),  # a text correction
    ]
    pairs, quarantined = build_pairs(feedback, schema, FeedbackSettings(min_pairs=1),
                                     {normalized_text([{"role": "user", "content": "delete task 17"}])})
    assert [p["feedback_id"] for p in pairs] == [1, 7]
    assert all(pair_problem(p, schema) is None for p in pairs)
    first = pairs[0]
    assert first["prompt"] == [{"role": "user", "content": "remove task 4"}]  # the system prompt is the trainer's
    assert first["chosen"][0]["tool_calls"][0]["function"] == {"name": "delete_task", "arguments": {"task_id": 4}}
    assert first["rejected"] == [{"role": "assistant", "content": WRONG}]
    reasons = {q["origin"].split()[1]: q["reason"] for q in quarantined}
    assert set(reasons) == {"2", "3", "4", "5", "6"}
    assert "task_id" in reasons["2"] and "drop_table" in reasons["3"]
    assert "same answer" in reasons["4"] and "came before" in reasons["5"] and "test split" in reasons["6"]


def test_a_flood_from_one_client_is_capped_and_the_newest_pairs_are_held_out(schema):
    flood = [item(n, f"remove task {n}", delete(n), client="spammer") for n in range(1, 41)]
    others = [item(100 + n, f"erase task {n}", delete(n), client=f"user{n}") for n in range(10)]
    pairs, quarantined = build_pairs(flood + others, schema, FeedbackSettings(max_pairs_per_client=5,
                                                                              held_out_share=0.2), set())
    assert sum(p["origin"].startswith("feedback ") and p["feedback_id"] <= 40 for p in pairs) == 5
    assert len(pairs) == 15 and len(quarantined) == 35
    assert all("max_pairs_per_client" in q["reason"] for q in quarantined)
    held_out = [p for p in pairs if p["split"] == "held_out"]
    assert len(held_out) == 3 and min(p["received_at"] for p in held_out) > max(
        p["received_at"] for p in pairs if p["split"] == "train")  # by time: never judged on its past


def test_an_approved_answer_against_a_disliked_one_is_a_pair(schema):
    good = item(1, "remove task 8", answer='{"name": "delete_task", "arguments": {"task_id": 8}}', rating=1)
    bad = item(2, "Remove task 8", answer=WRONG, rating=-1, client="b")
    [pair], quarantined = build_pairs([good, bad], schema, FeedbackSettings(), set())
    assert not quarantined and pair["rejected"][0]["content"] == WRONG
    assert pair["chosen"][0]["tool_calls"][0]["function"]["name"] == "delete_task"


def test_the_bias_report_flags_chosen_answers_that_win_by_length(schema):
    pairs, _ = build_pairs([item(n, f"remove task {n}", delete(n), answer="no", client=f"u{n}")
                            for n in range(1, 41)], schema, FeedbackSettings(), set())
    report = bias_report(pairs, 0.95)
    assert report["chosen_longer_share"] == 1.0 and report["chosen_longer_lower_bound"] > 0.9
    assert report["call_against_text"] == 40


def test_a_review_decision_overrules_client_corrections_and_a_reviewer_is_not_capped(schema):
    """A reviewer approving an answer dismisses a client's correction of it; a reviewer's own
    correction replaces a client's; reviewers (the review queue) have no per-client cap."""
    poisoned = item(1, "remove task 4", {"name": "add_task", "arguments": {"title": "spam"}}, client="troll")
    approval = {**item(2, "remove task 4", answer=WRONG), "request_id": "r1", "rating": 1, "source": "review"}
    client_fix = item(3, "remove task 8", {"name": "complete_task", "arguments": {"task_id": 8}}, client="c")
    reviewer_fix = {**item(4, "remove task 8", delete(8)), "request_id": "r3", "rating": -1, "source": "review",
                    "client": "review:x"}
    reviews = [{**item(10 + n, f"remove task {20 + n}", delete(20 + n)), "source": "review", "client": "review:x"}
               for n in range(4)]
    pairs, quarantined = build_pairs([poisoned, approval, client_fix, reviewer_fix, *reviews], schema,
                                     FeedbackSettings(min_pairs=1, max_pairs_per_client=2), set())
    assert [p["feedback_id"] for p in pairs] == [4, 10, 11, 12, 13]  # over the cap of 2: reviewers are trusted
    assert pairs[0]["chosen"][0]["tool_calls"][0]["function"] == delete(8)
    reasons = {q["origin"].split()[1]: q["reason"] for q in quarantined}
    assert reasons == {"1": "a reviewer approved the answer this corrects (feedback 2)",
                       "3": "a reviewer corrected the answer this corrects (feedback 4)"}
