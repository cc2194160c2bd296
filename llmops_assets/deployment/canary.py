"""The live comparison of a challenger (canary or shadow) with the champion, on the gateway's
request log, decided by a sequential test that may look after every request.

KPIs, each oriented so that a positive difference favours the challenger:
- `probe_accuracy`: labelled prompts (the test split) sent to both releases, scored by exact
  match; paired on the same prompt.
- `error_rate`, `slow_rate` (first token later than the deployment gate's max_first_token_ms) and
  `invalid_tool_calls` (answers holding a call the schema rejects): per request; paired on the
  shadowed request in shadow mode, two independent arms in canary mode.

Each KPI has an anytime-valid confidence sequence at alpha / K (K KPIs, one-sided on each side).
Promote: every KPI is shown no worse than its non-inferiority margin. Roll back: any KPI is shown
worse at all. Otherwise continue, saying about how many more requests a decision needs. So a
false promotion (of a challenger worse than a margin) and a false rollback (of one at least as
good) each happen with probability at most alpha, however often the analysis runs.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from llmops_assets.core.chat import model_messages
from llmops_assets.core.releases import Release
from llmops_assets.core.scoring import expected_call, score
from llmops_assets.core.statistics import difference_bounds, observations_to_width, paired_difference_bounds
from llmops_assets.core.tools import ToolSchema
from llmops_assets.deployment import traffic
from llmops_assets.deployment.config import PromotionSettings
from llmops_assets.deployment.gateway import PIN_HEADER, PROBE_HEADER

Decision = str  # "promote", "continue" or "rollback"


def send_probes(endpoint: str, rows: list[dict[str, Any]], champion: Release, challenger: Release, system_prompt: str,
                max_tokens: int, api_key: str = "", log: Callable[[str], None] = lambda message: None) -> int:
    """Each labelled row's request to both releases through the gateway, pinned to each and logged
    under one probe id (`<row id>#<nonce>`), so the analysis pairs and scores them."""
    for row in rows:
        probe_id = f"{row['id']}#{uuid.uuid4().hex[:8]}"
        messages = model_messages(row["messages"][:-1], system_prompt)
        for release in (champion, challenger):
            result = traffic.send(endpoint, messages, max_tokens, api_key,
                                  headers={PIN_HEADER: str(release.release_number), PROBE_HEADER: probe_id})
            if result["status"] != 200:
                log(f"probe {probe_id} to release {release.release_number} answered {result['status']}")
    return len(rows)


def analyse(requests: list[dict[str, Any]], champion: Release, challenger: Release,
            labelled: dict[str, dict[str, Any]], schema: ToolSchema, settings: PromotionSettings,
            slow_first_token_ms: float, now: float | None = None) -> dict[str, Any]:
    """The decision on the requests logged since the challenger was registered, with its evidence:
    per KPI the samples, point values, bounds, margin and verdict; the rate of requests and about
    how many more a decision needs."""
    now = now or time.time()
    gate = settings.quality_gate
    samples = _samples(requests, champion, challenger, labelled, schema, slow_first_token_ms)
    margins = {"probe_accuracy": gate.probe_accuracy_margin, "error_rate": gate.error_rate_margin,
               "slow_rate": gate.slow_rate_margin, "invalid_tool_calls": gate.invalid_tool_call_margin}
    if not labelled or settings.probes_per_analysis == 0:
        del margins["probe_accuracy"]
    alpha = gate.alpha / len(margins)
    kpis = {name: _kpi(samples[name], margin, alpha) for name, margin in margins.items()}
    worse = [name for name, k in kpis.items() if k["verdict"] == "worse"]
    if worse:
        decision, reason = "rollback", "shown worse than the champion on " + ", ".join(worse)
    elif all(k["verdict"] == "non-inferior" for k in kpis.values()):
        decision, reason = "promote", "shown no worse than the champion beyond each margin on every KPI"
    else:
        waiting = [name for name, k in kpis.items() if k["verdict"] == "undecided"]
        decision, reason = "continue", "not yet decided on " + ", ".join(waiting)
    served = [r for r in requests if r["release_number"] == challenger.release_number]
    minutes = max((now - challenger.deployed_at) / 60, 1e-9)
    rate = len(served) / minutes
    needed = [k["more_requests"] for k in kpis.values() if k["verdict"] == "undecided"]
    more = None if decision != "continue" or None in needed else max(needed, default=0)
    ttft = {role: _p95([r["first_token_ms"] for r in requests if r["release_number"] == release.release_number
                        and r["first_token_ms"] is not None])
            for role, release in (("champion", champion), ("challenger", challenger))}
    return {
        "decision": decision, "reason": reason, "alpha": gate.alpha, "alpha_per_kpi": alpha,
        "champion": _release(champion), "challenger": _release(challenger),
        "window": {"since": challenger.deployed_at, "until": now, "requests": len(requests)},
        "challenger_requests": len(served), "challenger_requests_per_minute": rate,
        "more_requests": more, "eta_minutes": None if more is None or rate == 0 else more / rate,
        "first_token_p95_ms": ttft, "kpis": kpis,
        "agreement": samples["agreement"],
    }


def next_step(analysis: dict[str, Any], challenger: Release, settings: PromotionSettings,
              requests_at_step: int) -> tuple[str, float]:
    """What the decision does to the roles: ("rollback", 0), ("champion", 1) for the last step,
    ("canary", next share) for a step up, or ("hold", current share)."""
    decision = analysis["decision"]
    if decision == "rollback":
        return "rollback", 0.0
    canary = challenger.role == "canary"
    if decision != "promote" or (canary and requests_at_step < settings.min_requests_per_step):
        return "hold", challenger.traffic_weight
    later = [w for w in settings.traffic_steps if w > challenger.traffic_weight]
    return ("canary", later[0]) if canary and later else ("champion", 1.0)


def _samples(requests, champion: Release, challenger: Release, labelled, schema: ToolSchema,
             slow_ms: float) -> dict[str, Any]:
    """Per KPI: paired differences (good direction) or the two arms' outcomes (1 = bad)."""
    ours = (champion.release_number, challenger.release_number)
    requests = [r for r in requests if r["release_number"] in ours]
    probes: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in requests:
        if r.get("probe_id"):
            probes[r["probe_id"]][r["release_number"]] = r
    accuracy = []
    for probe_id, pair in probes.items():
        row = labelled.get(probe_id.split("#")[0])
        if row is None or len(pair) != 2:
            continue
        want = expected_call(row["messages"])
        right = [score([want], [pair[n]["answer"] or ""], schema)["task_accuracy"] for n in ours]
        accuracy.append(right[1] - right[0])

    def bad(r) -> dict[str, float]:
        return {"error_rate": float(r["status"] != 200),
                "slow_rate": float(r["first_token_ms"] is None or r["first_token_ms"] > slow_ms),
                "invalid_tool_calls": float(r["tool_call_valid"] is False)}

    outcomes: dict[str, Any] = {"probe_accuracy": {"paired": accuracy}, "agreement": None}
    if challenger.role == "shadow":
        client = {r["request_id"]: r for r in requests if r["release_number"] == champion.release_number}
        pairs = [(client[r["shadow_of"]], r) for r in requests
                 if r["release_number"] == challenger.release_number and r.get("shadow_of") in client]
        for name in ("error_rate", "slow_rate", "invalid_tool_calls"):
            outcomes[name] = {"paired": [bad(a)[name] - bad(b)[name] for a, b in pairs]}
        same = sum((a["answer"] or "") == (b["answer"] or "") for a, b in pairs)
        outcomes["agreement"] = {"pairs": len(pairs), "identical": same, "rate": same / len(pairs) if pairs else None}
    else:
        arms = {n: [bad(r) for r in requests if r["release_number"] == n] for n in ours}
        for name in ("error_rate", "slow_rate", "invalid_tool_calls"):
            outcomes[name] = {"champion": [o[name] for o in arms[ours[0]]],
                              "challenger": [o[name] for o in arms[ours[1]]]}
    return outcomes


def _kpi(sample: dict[str, list[float]], margin: float, alpha: float) -> dict[str, Any]:
    """Bounds on the difference (challenger better: positive), its verdict and what is still needed."""
    if "paired" in sample:
        d = np.asarray(sample["paired"], dtype=float)
        low, high = paired_difference_bounds(d, alpha) if len(d) else (-1.0, 1.0)
        n, point = len(d), float(d.mean()) if len(d) else 0.0
        variance, scale, per_arm = float(np.var((d + 1) / 2)) if len(d) else 0.25, 2.0, 1.0
        described = {"paired": True, "n": n}
    else:
        champion, challenger = (np.asarray(sample[k], dtype=float) for k in ("champion", "challenger"))
        low, high = difference_bounds(champion, challenger, alpha)  # bad(champion) - bad(challenger)
        n = len(challenger)
        point = float(champion.mean() - challenger.mean()) if len(champion) and len(challenger) else 0.0
        variance = float(np.var(challenger)) if len(challenger) else 0.25
        scale, per_arm = 1.0, 2.0
        described = {"paired": False, "n": n, "champion_n": len(champion),
                     "champion_rate": float(champion.mean()) if len(champion) else None,
                     "challenger_rate": float(challenger.mean()) if len(challenger) else None}
    if high < 0:
        verdict = "worse"
    elif low > -margin and n:
        verdict = "non-inferior"
    else:
        verdict = "undecided"
    more = None
    if verdict == "undecided":
        # The bound must move past the nearer boundary: -margin (promote) or 0 (roll back).
        gaps = [g for g in (point + margin, -point) if g > 0]
        total = [observations_to_width(n, variance, g / scale / per_arm, alpha / per_arm) for g in gaps]
        total = [t for t in total if t is not None]
        more = max(0, min(total) - n) if total else None
    return described | {"difference": point, "bounds": [float(low), float(high)], "margin": margin, "alpha": alpha,
                        "verdict": verdict, "more_requests": more}


def _p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def _release(release: Release) -> dict[str, Any]:
    return {"release_number": release.release_number, "version": release.version, "role": release.role,
            "traffic_weight": release.traffic_weight}


def probe_rows(test_rows: list[dict[str, Any]], already_sent: int, count: int) -> list[dict[str, Any]]:
    """The next `count` labelled rows, cycling through the test split."""
    if not test_rows or count == 0:
        return []
    start = already_sent % len(test_rows)
    return [test_rows[(start + i) % len(test_rows)] for i in range(min(count, len(test_rows)))]

