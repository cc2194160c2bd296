"""Deployment gates: GGUF fidelity (blocks serving) and live probes of what is served now."""


from dagster import AssetCheckExecutionContext, MetadataValue, asset_check

from llmops_assets.core.storage import read_json
from llmops_assets.deployment import release, targets
from llmops_assets.deployment.fidelity import fidelity_verdict
from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig, gate_result, verdict_result


@asset_check(asset="gguf_model", blocking=True,
             description="The quantized GGUF's tool-call accuracy is within max_fidelity_drop of the evaluated model's.")
def gguf_fidelity(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    fidelity = read_json(artifacts.upstream(context, "gguf_model").path / "fidelity.json")
    return verdict_result(fidelity_verdict(fidelity, pipeline.settings.stages.deployment.quality_gate),
                          gguf_task_accuracy=fidelity["gguf_task_accuracy"],
                          evaluated_task_accuracy=fidelity["evaluated_task_accuracy"],
                          greedy_agreement=fidelity["greedy_agreement"])


@asset_check(asset="deployed_model", blocking=True,
             description="The served model answers now: health, first-token latency and resident memory, probed live.")
def serving_health(context: AssetCheckExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    deployment = pipeline.settings.stages.deployment
    home = artifacts.home_path
    champion = artifacts.registry.champion()
    status = champion.view() if champion else None
    target = targets.target_of(status, deployment, home) if status else None
    if target is None or not target.serving(status):
        reason = "nothing is being served" if status is None else f"{status['model']} on {status['server']} is not serving"
        return gate_result("health", float("inf"), deployment.quality_gate.health_timeout_s, False, reason=reason)
    probe = target.probe(targets.Candidate.of(status), status["probe_request"])
    verdicts = release.verdicts(probe, deployment.quality_gate)
    failed = [v.gate for v in verdicts if not v.passed]
    latency = next(v for v in verdicts if v.gate == "first_token_ms")
    return gate_result(
        "first_token_ms", latency.value, latency.threshold, not failed,
        endpoint=status["endpoint"], failed_gates=MetadataValue.json(failed),
        probes=MetadataValue.json([v.__dict__ for v in verdicts]),
    )
