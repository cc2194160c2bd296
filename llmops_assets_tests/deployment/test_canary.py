"""The sequential canary decision: its error rates on simulated streams (checked after every
batch), its decisions on request logs, and the gateway's sticky traffic split. Two real releases
behind the gateway are in integration/test_pipeline_tiny.py and e2e/test_default_pipeline.py."""

import numpy as np
import pytest

from llmops_assets.core.releases import Release, ReleaseRegistry, read_status
from llmops_assets.core.statistics import mean_bounds
from llmops_assets.core.storage import ArtifactStore
from llmops_assets.core.tools import ToolSchema
from llmops_assets.deployment import canary
from llmops_assets.deployment import release as releasing
from llmops_assets.deployment.config import PromotionSettings
from llmops_assets.deployment.gateway import traffic_share
from llmops_assets.settings import load_settings
from llmops_assets_tests.core.test_releases import release as a_release

ALPHA, STREAMS, STEPS, BATCH = 0.05, 2000, 1500, 10


def paired_stream(rng, wins: float, losses: float) -> np.ndarray:
    """Paired differences challenger - champion: +1 with `wins`, -1 with `losses`, else 0."""
    u = rng.random((STREAMS, STEPS))
    return np.where(u < wins, 1.0, np.where(u < wins + losses, -1.0, 0.0))


def difference_bounds_per_step(d: np.ndarray):
    lower, upper = mean_bounds((d + 1) / 2, ALPHA)
    return (2 * lower - 1)[:, BATCH - 1::BATCH], (2 * upper - 1)[:, BATCH - 1::BATCH]  # looked at after each batch


def test_false_promotion_and_false_rollback_stay_within_alpha_when_looking_after_every_batch():
    rng = np.random.default_rng(7)
    margin = 0.05
    # At least as good as the champion: rolled back (upper bound below 0) at most alpha of the time.
    for wins, losses in ((0.1, 0.1), (0.0, 0.0), (0.3, 0.3)):
        _, upper = difference_bounds_per_step(paired_stream(rng, wins, losses))
        false_rollback = (upper < 0).any(axis=1).mean()
        assert false_rollback <= ALPHA, (wins, losses, false_rollback)
    # Worse by exactly the margin: promoted (lower bound above -margin) at most alpha of the time.
    for wins, losses in ((0.0, margin), (0.1, 0.1 + margin), (0.3, 0.3 + margin)):
        lower, _ = difference_bounds_per_step(paired_stream(rng, wins, losses))
        false_promotion = (lower > -margin).any(axis=1).mean()
        assert false_promotion <= ALPHA, (wins, losses, false_promotion)
    # Two independent arms (canary traffic), a failure rate of 2% on both: never shown different.
    arms = [mean_bounds(rng.binomial(1, 0.02, (STREAMS, STEPS)), ALPHA / 2) for _ in range(2)]
    difference_upper = arms[0][1] - arms[1][0]
    assert (difference_upper < 0).any(axis=1).mean() <= ALPHA


def test_the_sequential_test_decides_when_there_is_something_to_see():
    rng = np.random.default_rng(11)
    # Clearly worse (loses 60% of pairs): rolled back within 60 pairs in almost every stream.
    _, upper = difference_bounds_per_step(paired_stream(rng, 0.0, 0.6))
    assert (upper[:, :6] < 0).any(axis=1).mean() >= 0.95
    # Identical answers: shown within a 0.1 margin after a few hundred pairs, in every stream.
    lower, _ = difference_bounds_per_step(paired_stream(rng, 0.0, 0.0))
    assert (lower[:, 30] > -0.1).all()


def release(number: int, role: str, weight: float, deployed_at: float = 1000.0) -> Release:
    return Release(version=f"v{number}", model_sha256="0" * 64, quantization="Q8_0", server="llamacpp",
                   endpoint=f"http://127.0.0.1:{9000 + number}/v1", model="m", model_name="m", model_path="/m.gguf",
                   role=role, traffic_weight=weight, release_number=number, deployed_at=deployed_at)


LABELLED = {f"row{i}": {"id": f"row{i}", "messages": [
    {"role": "user", "content": f"Delete task {i}"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "delete_task", "arguments": {"task_id": i}}}]}]} for i in range(400)}


def request_log(n_probes: int, challenger_right: float, n_requests: int, challenger_errors: float = 0.0,
                seed: int = 0) -> list[dict]:
    """Probes answered by both releases (the champion always right), and client requests split
    between the two arms."""
    rng = np.random.default_rng(seed)
    rows, at = [], 1001.0

    def entry(number, answer, status=200, probe_id=None):
        nonlocal at
        at += 1
        return {"request_id": f"r{len(rows)}", "received_at": at, "release_number": number, "status": status,
                "first_token_ms": 50.0, "tool_call_valid": True, "answer": answer, "probe_id": probe_id,
                "shadow_of": None}

    for i in range(n_probes):
        right = f'{{"name": "delete_task", "arguments": {{"task_id": {i}}}}}'
        wrong = '{"name": "list_tasks", "arguments": {}}'
        rows.append(entry(1, right, probe_id=f"row{i}#a"))
        rows.append(entry(2, right if rng.random() < challenger_right else wrong, probe_id=f"row{i}#a"))
    for i in range(n_requests):
        number = 2 if i % 2 else 1
        failed = number == 2 and rng.random() < challenger_errors
        rows.append(entry(number, "", status=502 if failed else 200))
    return rows


@pytest.fixture
def setup():
    settings = load_settings()
    return ToolSchema.from_file(settings.domain.tools_file), PromotionSettings(mode="canary")


def test_a_worse_challenger_is_rolled_back_naming_the_kpi(setup):
    schema, promotion = setup
    champion, challenger = release(1, "champion", 1.0), release(2, "canary", 0.1)
    analysis = canary.analyse(request_log(40, 0.2, 40), champion, challenger, LABELLED, schema, promotion, 500, 2000)
    assert analysis["decision"] == "rollback" and "probe_accuracy" in analysis["reason"]
    accuracy = analysis["kpis"]["probe_accuracy"]
    assert accuracy["verdict"] == "worse" and accuracy["bounds"][1] < 0 and accuracy["n"] == 40
    assert canary.next_step(analysis, challenger, promotion, 100) == ("rollback", 0.0)
    # Failing requests alone are a reason too.
    failing = canary.analyse(request_log(10, 1.0, 200, challenger_errors=0.5), champion, challenger, LABELLED,
                             schema, promotion, 500, 2000)
    assert failing["decision"] == "rollback" and failing["kpis"]["error_rate"]["verdict"] == "worse"


def test_an_equal_challenger_waits_for_evidence_then_steps_up_and_is_promoted(setup):
    schema, promotion = setup
    champion, challenger = release(1, "champion", 1.0), release(2, "canary", 0.1)
    early = canary.analyse(request_log(10, 1.0, 20), champion, challenger, LABELLED, schema, promotion, 500, 2000)
    assert early["decision"] == "continue" and early["more_requests"] > 0 and early["eta_minutes"] > 0
    assert canary.next_step(early, challenger, promotion, 10) == ("hold", 0.1)
    wide = promotion.model_copy(update={"quality_gate": promotion.quality_gate.model_copy(update={
        "probe_accuracy_margin": 0.2, "error_rate_margin": 0.2, "slow_rate_margin": 0.2,
        "invalid_tool_call_margin": 0.2})})
    later = canary.analyse(request_log(150, 1.0, 300), champion, challenger, LABELLED, schema, wide, 500, 2000)
    assert later["decision"] == "promote", later["kpis"]
    assert all(k["bounds"][0] > -0.2 for k in later["kpis"].values())
    assert canary.next_step(later, challenger, wide, 5) == ("hold", 0.1)  # too few requests at this step yet
    assert canary.next_step(later, challenger, wide, 50) == ("canary", 0.5)
    assert canary.next_step(later, release(2, "canary", 0.5), wide, 50) == ("champion", 1.0)
    assert canary.next_step(later, release(2, "shadow", 0.0), wide, 0) == ("champion", 1.0)


def test_the_traffic_split_is_sticky_per_key_and_near_its_weight():
    keys = [f"user-{i}" for i in range(4000)]
    shares = [traffic_share(k, 7) for k in keys]
    assert shares == [traffic_share(k, 7) for k in keys]  # the same key, the same place
    assert abs(np.mean([s < 0.1 for s in shares]) - 0.1) < 0.02
    # A key in the canary at 10% stays in it at 50%.
    assert all(s < 0.5 for s in shares if s < 0.1)


def test_promotion_steps_must_rise_within_0_and_1():
    with pytest.raises(ValueError, match="rising"):
        PromotionSettings(traffic_steps=[0.5, 0.1])
    with pytest.raises(ValueError, match="between 0 and 1"):
        PromotionSettings(traffic_steps=[0.1, 1.0])


def test_a_promotion_killed_while_the_old_champion_drains_leaves_the_status_naming_the_new_champion(tmp_path,
                                                                                                    monkeypatch):
    """deployment_status.json is written the moment the registry names the new champion, not after
    the old one has drained and stopped (seconds in which a kill left the two disagreeing)."""
    registry = ReleaseRegistry(ArtifactStore(tmp_path / "artifacts"))
    registry.register(a_release(1, "v1"))
    registry.write_views(tmp_path)
    challenger = registry.register(a_release(2, "v2", role="canary", traffic_weight=0.5)).release

    def killed(settings):
        raise KeyboardInterrupt("killed while the old champion drains")

    monkeypatch.setattr(releasing, "_drain", killed)
    with pytest.raises(KeyboardInterrupt):
        releasing.promote_challenger(registry, load_settings().stages.deployment, tmp_path, challenger, "promoted")
    assert registry.releases()[2].role == "champion"
    assert read_status(tmp_path)["release_number"] == 2
