"""Promotion: the challenger that `deployed_model` registered beside the champion (promotion
`canary` or `shadow`) is compared with it live and promoted or rolled back, by itself.

`canary_analysis` (re-materialized by `canary_sensor`) sends labelled probes through the gateway,
runs the sequential test on the request log and records the decision; a rollback retires the
challenger there and then (the champion, untouched, takes all traffic). Its blocking check
`challenger_not_worse` fails on a rollback, so `release_roles` never runs after one; on a promote
decision `release_roles` moves the canary's traffic up a step, or makes it the champion.
"""

import time

from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)

from llmops_assets.core import plots
from llmops_assets.core.storage import read_json, read_jsonl, write_json
from llmops_assets.core.tools import ToolSchema
from llmops_assets.deployment import canary, release
from llmops_assets.orchestration.deployment.assets import gateway_endpoint, write_agent_config
from llmops_assets.orchestration.resources import (
    ArtifactStoreResource,
    PipelineConfig,
    artifact_result,
    gate_result,
    markdown_image,
    request_log,
)

ANALYSIS_FILE = "canary_analysis.json"


@asset(group_name="deployment", deps=["deployed_model"],
       description="The live challenger against the champion on the gateway's request log: a sequential test "
                   "decides promote, continue or roll back (a rollback is applied here).")
def canary_analysis(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    deployment = settings.stages.deployment
    promotion, home, registry = deployment.promotion, artifacts.home_path, artifacts.registry
    champion, challenger = registry.champion(), registry.challenger()
    if champion is None or challenger is None:
        analysis = {"decision": "none", "reason": "no challenger is live", "action": "hold"}
        inputs = {"champion": champion.version if champion else ""}
    else:
        schema = ToolSchema.from_file(settings.domain.tools_file)
        test = read_jsonl(artifacts.store.get("curated_dataset", challenger.inputs["curated_dataset"]).path / "test.jsonl")
        log = request_log(pipeline, artifacts)
        sent = len({r["probe_id"] for r in log.since(challenger.deployed_at) if r["probe_id"]})
        rows = canary.probe_rows(test, sent, promotion.probes_per_analysis)
        if rows:
            endpoint = gateway_endpoint(artifacts, pipeline)
            canary.send_probes(endpoint, rows, champion, challenger, settings.domain.system_prompt,
                               settings.stages.evaluation.max_new_tokens, deployment.api_key(), context.log.warning)
            context.log.info(f"sent {len(rows)} labelled probes to releases {champion.release_number} and "
                             f"{challenger.release_number}")
        requests = log.since(challenger.deployed_at)
        analysis = canary.analyse(requests, champion, challenger, {row["id"]: row for row in test}, schema, promotion,
                                  deployment.quality_gate.max_first_token_ms)
        step_began = max([e.at for e in registry.events() if e.release_number == challenger.release_number
                          and e.kind in ("registered", "role_changed")], default=challenger.deployed_at)
        at_step = sum(r["release_number"] == challenger.release_number and r["received_at"] >= step_began
                      for r in requests)
        action, weight = canary.next_step(analysis, challenger, promotion, at_step)
        analysis |= {"action": action, "next_traffic_weight": weight, "requests_at_step": at_step}
        if action == "rollback":
            release.retire_challenger(registry, deployment, home, challenger,
                                      f"rolled back by canary_analysis: {analysis['reason']}")
            context.log.warning(f"release {challenger.release_number} ({challenger.version}) rolled back: "
                                f"{analysis['reason']}")
        inputs = {"champion": champion.version, "challenger": challenger.version}
        context.log.info(_summary(analysis))
    with artifacts.store.write("canary_analysis", inputs=inputs) as out:
        write_json(out.dir / ANALYSIS_FILE, analysis)
        if analysis.get("kpis"):
            (out.dir / "bounds.png").write_bytes(plots.difference_bounds_png(analysis["kpis"]))
        out.metrics = {"decision": analysis["decision"], "action": analysis["action"]}
    published = artifacts.store.get("canary_analysis", out.version)
    extra = {}
    if analysis.get("kpis"):
        extra = {"bounds": markdown_image(published.path / "bounds.png"),
                 "kpis": MetadataValue.json(analysis["kpis"]), "more_requests": str(analysis["more_requests"]),
                 "challenger_requests": analysis["challenger_requests"]}
    return artifact_result(published, decision=analysis["decision"], action=analysis["action"],
                           reason=analysis["reason"], **extra)


@asset_check(asset="canary_analysis", blocking=True,
             description="The challenger is not shown worse than the champion on any KPI (else it was rolled back).")
def challenger_not_worse(context: AssetCheckExecutionContext, artifacts: ArtifactStoreResource):
    analysis = read_json(artifacts.upstream(context, "canary_analysis").path / ANALYSIS_FILE)
    kpis = analysis.get("kpis") or {}
    worst = min(kpis.values(), key=lambda k: k["bounds"][1], default=None)
    return gate_result("upper_bound_of_difference", worst["bounds"][1] if worst else 0.0, 0.0,
                       analysis["decision"] != "rollback", decision=analysis["decision"], reason=analysis["reason"],
                       **({"kpis": MetadataValue.json(kpis)} if kpis else {}))


@asset(group_name="deployment", deps=["canary_analysis"], output_required=False,
       description="The registry's roles after a promote decision: the canary's next traffic step, or the "
                   "challenger as champion. Materializes only when roles change.")
def release_roles(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    analysis = read_json(artifacts.upstream(context, "canary_analysis").path / ANALYSIS_FILE)
    registry, settings = artifacts.registry, pipeline.settings
    deployment, home = settings.stages.deployment, artifacts.home_path
    challenger = registry.challenger()
    if analysis["decision"] != "promote" or analysis["action"] not in ("canary", "champion"):
        context.log.info(f"no role change: the analysis decided {analysis['decision']} ({analysis['reason']})")
        return
    if challenger is None or challenger.release_number != analysis["challenger"]["release_number"]:
        context.log.warning("the analysed challenger is no longer live: no role change")
        return
    reason = f"canary_analysis: {analysis['reason']}"
    if analysis["action"] == "canary":
        registry.set_role(challenger.release_number, "canary", analysis["next_traffic_weight"], reason=reason)
        context.log.info(f"release {challenger.release_number} takes {analysis['next_traffic_weight']:.0%} of traffic")
    else:
        served = release.promote_challenger(registry, deployment, home, challenger, reason)
        write_agent_config(home, settings, gateway_endpoint(artifacts, pipeline), served)
        context.log.info(f"release {served.release_number} ({served.version}) is the champion")
    roles = {r.release_number: {"version": r.version, "role": r.role, "traffic_weight": r.traffic_weight}
             for r in registry.live()}
    with artifacts.store.write("release_roles", inputs={"canary_analysis": analysis["challenger"]["version"]}) as out:
        write_json(out.dir / "roles.json", {"at": time.time(), "reason": reason, "live": roles})
    yield artifact_result(artifacts.store.get("release_roles", out.version), action=analysis["action"],
                          live=MetadataValue.json(roles))


_NOT_FINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                 DagsterRunStatus.STARTED]
PRIORITY_TAG = "dagster/priority"

canary_review = define_asset_job(
    "canary_review", selection=AssetSelection.assets("canary_analysis", "release_roles"),
    description="Analyse the live challenger now: probes, the sequential test, promote or roll back.",
)


@sensor(job=canary_review, minimum_interval_seconds=10, default_status=DefaultSensorStatus.RUNNING,
        description="While a challenger is live, runs canary_analysis as it arrives, then every "
                    "promotion.analysis_interval_s.")
def canary_sensor(context: SensorEvaluationContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    challenger = artifacts.registry.challenger()
    if challenger is None:
        return SkipReason("no challenger is live")
    waiting = context.instance.get_run_records(RunsFilter(job_name=canary_review.name, statuses=_NOT_FINISHED), limit=1)
    if waiting:
        return SkipReason(f"a canary_review run is {waiting[0].dagster_run.status.value} already")
    interval = pipeline.settings.stages.deployment.promotion.analysis_interval_s
    latest = context.instance.get_latest_materialization_event(AssetKey("canary_analysis"))
    if latest is not None and latest.timestamp > challenger.deployed_at and time.time() - latest.timestamp < interval:
        return SkipReason(f"analysed {time.time() - latest.timestamp:.0f}s ago (every {interval}s)")
    return RunRequest(run_key=f"canary:{challenger.release_number}:{int(time.time() // interval)}",
                      tags={"llmops/trigger": "canary", PRIORITY_TAG: "10"})  # dequeued before training runs


def _summary(analysis: dict) -> str:
    parts = [f"{name} {k['difference']:+.3f} [{k['bounds'][0]:+.3f}, {k['bounds'][1]:+.3f}] n={k['n']} {k['verdict']}"
             for name, k in analysis["kpis"].items()]
    more = f"; about {analysis['more_requests']} more challenger requests" if analysis["more_requests"] else ""
    return f"{analysis['decision']} -> {analysis['action']}: {analysis['reason']}{more}. " + "; ".join(parts)
