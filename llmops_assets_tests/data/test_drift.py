"""The drift report on real all-MiniLM-L6-v2 embeddings: it fires on prompts from another domain
and stays quiet on a fresh sample of the same one; too few live prompts give no verdict."""

import itertools
import random

import pytest

from llmops_assets.core.storage import read_jsonl
from llmops_assets.data.config import DriftSettings
from llmops_assets.data.drift import drift_report
from llmops_assets.data.synth import SEED_FILE


def user_texts() -> list[str]:
    texts = ["\n".join(m["content"] for m in row["messages"] if m["role"] == "user") for row in read_jsonl(SEED_FILE)]
    random.Random(3).shuffle(texts)
    return texts


def other_domain(count: int) -> list[str]:
    """Requests a task assistant never saw: cooking, weather, travel, composed from parts."""
    dishes = ["lentil soup", "banana bread", "pad thai", "risotto", "shakshuka", "apple pie"]
    cities = ["Lisbon", "Osaka", "Nairobi", "Quito", "Oslo", "Hanoi"]
    forms = ["How long should I bake {d}?", "What wine goes with {d}?", "Will it snow in {c} next week?",
             "Cheapest way to fly from {c} to Rome?", "Is {d} popular in {c}?", "Best time of year to visit {c}?"]
    made = [f.format(d=d, c=c) for f, d, c in itertools.product(forms, dishes, cities)]
    random.Random(5).shuffle(made)
    return made[:count]


@pytest.fixture(scope="module")
def samples():
    texts = user_texts()
    return texts[:400], texts[400:560]


def live(texts):
    return [{"text": t, "tool": "text", "request_id": t} for t in texts]  # the text as its id: easy to check


def test_prompts_from_another_domain_drift_and_a_fresh_sample_of_the_same_does_not(samples):
    reference, fresh = samples
    settings = DriftSettings(permutations=20)
    same = drift_report(reference, live(fresh), settings)
    assert not same["drifted"] and same["auc"] <= same["threshold"], same
    other = drift_report(reference, live(other_domain(160)), settings)
    assert other["drifted"] and other["auc"] > 0.9 and other["auc"] > other["threshold"], other
    flagged = [c for c in other["clusters"] if c["flagged"]]
    assert flagged and any("?" in example for c in flagged for example in c["examples"])
    # Mixed in at a quarter, the new domain still shows, and its cluster is the one flagged.
    mixed = drift_report(reference, live(fresh[:120] + other_domain(40)), settings)
    assert mixed["drifted"], mixed
    top = mixed["clusters"][0]
    assert top["flagged"] and set(top["examples"]) <= set(other_domain(160))
    # Its prompts go to the review queue (up to review_per_cluster); an unflagged cluster's do not.
    assert 0 < len(top["request_ids"]) <= settings.review_per_cluster
    assert set(top["request_ids"]) <= set(other_domain(160))
    assert all(c["request_ids"] == [] for c in mixed["clusters"] if not c["flagged"])


def test_too_few_live_prompts_give_no_verdict(samples):
    reference, fresh = samples
    report = drift_report(reference, live(fresh[:20]), DriftSettings())
    assert not report["drifted"] and "no verdict yet" in report["note"]
