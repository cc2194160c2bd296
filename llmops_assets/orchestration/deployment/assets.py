"""Deployment group: merge -> GGUF -> served release.

Automation starts these only after every upstream gate passed; each asset also refuses, itself, a
candidate whose evaluation did not pass or whose GGUF is not faithful to what was evaluated, so
no job, selection or UI click can walk around the gates.
"""


import shutil
import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Config, MetadataValue
from pydantic import Field

from llmops_assets.core.chat import model_messages
from llmops_assets.core.contracts import EvalReport, read_report
from llmops_assets.core.modeling import load_merged, save_merged
from llmops_assets.core.releases import ReleaseRegistry
from llmops_assets.core.storage import Artifact, file_sha256, read_json, read_jsonl, write_json
from llmops_assets.core.tools import ToolSchema
from llmops_assets.deployment import export, gateway, kubernetes, packaging, release, targets
from llmops_assets.deployment.fidelity import fidelity_verdict, replay
from llmops_assets.evaluation.gates import evaluation_verdicts
from llmops_assets.orchestration.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.orchestration.resources import (
    ArtifactStoreResource,
    PipelineConfig,
    Refused,
    artifact_result,
    retried_asset,
)
from llmops_assets.settings import config_path


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="deployment",
               deps=["eval_report", "cpt_model", "dpo_adapter"],
               description="The evaluated LoRA adapter merged into the model it was trained on, as a Hugging Face folder.")
def merged_model(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    base = artifacts.upstream(context, "cpt_model")
    adapter = artifacts.upstream(context, "dpo_adapter")
    evaluated = artifacts.upstream(context, "eval_report")
    evaluated_pair = (evaluated.manifest["inputs"].get("cpt_model"), evaluated.manifest["inputs"].get("dpo_adapter"))
    if evaluated_pair != (base.version, adapter.version):
        raise GateNotPassed(f"dpo_adapter {adapter.version} on cpt_model {base.version} was never evaluated (the latest "
                            f"eval_report {evaluated.version} evaluated {evaluated_pair[1]} on {evaluated_pair[0]}): "
                            "materialize eval_report first")
    require_passed_evaluation(artifacts, pipeline, evaluated.version)
    inputs = {"cpt_model": base.version, "dpo_adapter": adapter.version, "eval_report": evaluated.version}

    def build(out):
        model, tokenizer = load_merged(base.path / "model", adapter.path / "adapter_weights")
        save_merged(model, tokenizer, base.path / "model", out.dir / "model")

    return artifact_result(artifacts.build_or_reuse(context, "merged_model", inputs, {}, build))


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="deployment", deps=["merged_model", "eval_report"],
               description="The merged model as a quantized GGUF with its Modelfile, replayed on the evaluation "
                           "prompts through llama.cpp to measure fidelity.")
def gguf_model(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    from transformers import AutoTokenizer

    settings = pipeline.settings
    deployment = settings.stages.deployment
    merged = artifacts.upstream(context, "merged_model")
    evaluated = artifacts.store.get("eval_report", merged.manifest["inputs"]["eval_report"])
    require_passed_evaluation(artifacts, pipeline, evaluated.version)
    inputs = {"merged_model": merged.version, "eval_report": evaluated.version}
    config = {"quantization": deployment.quantization}

    def build(out):
        markers = packaging.chat_markers(AutoTokenizer.from_pretrained(merged.path / "model"))
        with tempfile.TemporaryDirectory(dir=out.dir.parent) as scratch:
            f16 = Path(scratch) / "model-f16.gguf"
            export.convert_to_gguf(merged.path / "model", f16)
            size_mb = f16.stat().st_size / 1e6
            context.log.info(f"converted to f16 GGUF ({size_mb:.0f} MB), quantizing to {deployment.quantization}")
            export.quantize(f16, out.dir / "model.gguf", deployment.quantization)
        spec = packaging.ollama_spec(markers, settings.domain.system_prompt)
        write_json(out.dir / "ollama.json", spec)
        (out.dir / "Modelfile").write_text(packaging.modelfile("model.gguf", spec))
        fidelity = replay(out.dir / "model.gguf", read_jsonl(evaluated.path / "predictions.jsonl"),
                          ToolSchema.from_file(settings.domain.tools_file), markers["stop"],
                          settings.stages.evaluation.max_new_tokens, deployment.n_threads, context.log.info)
        fidelity["evaluated_task_accuracy"] = evaluated.metrics["task_accuracy"]
        write_json(out.dir / "fidelity.json", fidelity)
        out.metrics = {k: v for k, v in fidelity.items() if k != "disagreements"} | {
            "quantization": deployment.quantization,
            "size_bytes": (out.dir / "model.gguf").stat().st_size,
            "sha256": file_sha256(out.dir / "model.gguf"),
        }

    gguf = artifacts.build_or_reuse(context, "gguf_model", inputs, config, build)
    disagreements = read_json(gguf.path / "fidelity.json")["disagreements"]
    return artifact_result(gguf, **gguf.metrics, disagreements=MetadataValue.json(disagreements[:10]))


class DeployConfig(Config):
    rollback_to: str = Field(
        "", description="Empty: serve the latest gguf_model. 'previous' or a version: serve that earlier "
                        "release again from the artifact store, without retraining.")


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="deployment",
               deps=["gguf_model", "eval_report", "curated_dataset", "base_model"],
               description="The release being served: a llama.cpp server on 127.0.0.1, switched to only after its "
                           "health, latency and memory probes pass. deployment_status.json describes it.")
def deployed_model(context: AssetExecutionContext, config: DeployConfig, pipeline: PipelineConfig,
                   artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    home, registry = artifacts.home_path, artifacts.registry
    if config.rollback_to:
        gguf_path, candidate, probe_messages = _rollback_release(registry, artifacts.store, config.rollback_to)
        context.log.info(f"rolling back from {candidate['rolled_back_from']} to {candidate['version']}")
    else:
        gguf = artifacts.upstream(context, "gguf_model")
        require_passed_evaluation(artifacts, pipeline, gguf.manifest["inputs"]["eval_report"])
        fidelity = fidelity_verdict(read_json(gguf.path / "fidelity.json"), settings.stages.deployment.quality_gate)
        if not fidelity.passed:
            raise GateNotPassed(f"gguf_model {gguf.version} is not faithful to the evaluated model: {fidelity.gate} "
                                f"{fidelity.value:.3f} > {fidelity.threshold}; it will not be served")
        inputs = {name: artifacts.upstream(context, name).version
                  for name in ("gguf_model", "eval_report", "curated_dataset", "base_model")}
        test = read_jsonl(artifacts.upstream(context, "curated_dataset").path / "test.jsonl")
        probe_messages = model_messages(test[0]["messages"][:-1], settings.domain.system_prompt)
        gguf_path = gguf.path / "model.gguf"
        candidate = {"version": gguf.version, "model_sha256": gguf.metrics["sha256"],
                     "quantization": gguf.metrics["quantization"], "task_accuracy": gguf.metrics["gguf_task_accuracy"],
                     "inputs": inputs, "rolled_back_from": None}
    current = _current_deployment(artifacts, candidate, settings.stages.deployment)
    if current is not None:
        context.log.info(f"{candidate['version']} is already served and answering: nothing to switch")
        gateway_endpoint(artifacts, pipeline, context.log.info)
        return _deployed_result(current)
    ollama_spec = read_json(gguf_path.parent / "ollama.json")
    served = release.deploy(gguf_path, ollama_spec, candidate, settings.stages.deployment, home, registry,
                            probe_messages, context.log.info)
    endpoint = gateway_endpoint(artifacts, pipeline, context.log.info)
    champion = registry.champion()
    agent = write_agent_config(home, settings, endpoint, champion)  # what agents call: the champion, via the gateway
    with artifacts.store.write("deployed_model", inputs=served.inputs) as out:
        write_json(out.dir / "deployment_status.json", served.view())
        write_json(out.dir / "agent_config.json", agent)
        shutil.copy2(gguf_path.parent / "Modelfile", out.dir / "Modelfile")
        out.metrics = {"version": served.version, "endpoint": served.endpoint, "gateway": endpoint, **served.probe}
    context.log.info(f"serving {served.version} as the {served.role} ({served.traffic_weight:.0%} of traffic) as "
                     f"{served.model} on {served.server} at {served.endpoint}, through the gateway at {endpoint}")
    return _deployed_result(artifacts.store.get("deployed_model", out.version))


def gateway_endpoint(artifacts: ArtifactStoreResource, pipeline: PipelineConfig, log=lambda message: None) -> str:
    """The gateway's endpoint, started when it does not run (it follows the registry by itself):
    a process on this machine, or on Kubernetes a Deployment and Service of its own."""
    deployment = pipeline.settings.stages.deployment
    if deployment.server == "kubernetes":
        endpoint = kubernetes.ensure_gateway(deployment)
        log(f"gateway at {endpoint} (Deployment {deployment.kubernetes.namespace}/{kubernetes.GATEWAY})")
        return endpoint
    state = gateway.ensure(artifacts.home_path, Path(pipeline.config_path or config_path()).resolve(),
                           artifacts.store.url, deployment.host, deployment.gateway.port)
    log(f"gateway at {state['endpoint']} (pid {state['pid']})")
    return state["endpoint"]


def write_agent_config(home: Path, settings, endpoint: str, champion) -> dict:
    """`agent_config.json`: how an agent calls the champion (through the gateway)."""
    agent = packaging.agent_config(ToolSchema.from_file(settings.domain.tools_file).functions, endpoint,
                                   champion.model_name, champion.version, settings.domain.system_prompt)
    write_json(home / "agent_config.json", agent)
    return agent


class GateNotPassed(Refused):
    """A deployment asset was asked to ship a candidate that did not pass its gates."""


def require_passed_evaluation(artifacts: ArtifactStoreResource, pipeline: PipelineConfig, eval_version: str) -> None:
    """Every blocking evaluation gate of `eval_version`, judged with the thresholds in force now,
    passed; else GateNotPassed naming the failed gates."""
    report = read_report(EvalReport, artifacts.store.get("eval_report", eval_version).path / "eval_report.json")
    failed = [v for v in evaluation_verdicts(report.model_dump(), pipeline.settings.stages.evaluation).values()
              if v.blocking and not v.passed]
    if failed:
        reasons = "; ".join(f"{v.gate} {v.value:.3f} vs threshold {v.threshold}" for v in failed)
        raise GateNotPassed(f"eval_report {eval_version} did not pass evaluation ({reasons}): its candidate is "
                            "neither merged, exported nor served, whatever job or selection asks for it")


def _current_deployment(artifacts: ArtifactStoreResource, candidate: dict, settings) -> Artifact | None:
    """The deployment record of `candidate` when it is the champion or the challenger now and it
    answers: a rerun with nothing new must not restart the server."""
    registry = artifacts.registry
    live = [r for r in (registry.champion(), registry.challenger()) if r and r.version == candidate["version"]]
    served = live[0] if live else None
    if (served is None or candidate["rolled_back_from"]
            or served.version != candidate["version"] or served.model_sha256 != candidate["model_sha256"]):
        return None
    if not targets.target_of(served.view(), settings, artifacts.home_path).serving(served.view()):
        return None
    records = [a for a in artifacts.store.versions("deployed_model")
               if read_json(a.path / "deployment_status.json").get("deployed_at") == served.deployed_at]
    return records[-1] if records else None


def _deployed_result(deployment: Artifact):
    status = read_json(deployment.path / "deployment_status.json")
    return artifact_result(deployment, endpoint=status["endpoint"], served_version=status["version"],
                           role=status["role"], traffic_weight=status["traffic_weight"],
                           model_sha256=status["model_sha256"], previous_version=str(status["previous_version"]),
                           rolled_back_from=str(status["rolled_back_from"]), server=status["server"],
                           release_inputs=MetadataValue.json(status["inputs"]),
                           first_token_ms=status["probe"]["first_token_ms"])


def _rollback_release(registry: ReleaseRegistry, store, version: str) -> tuple[Path, dict, list[dict]]:
    """An earlier release, its GGUF read from the artifact store by version and verified byte for
    byte against the sha256 recorded when it was served."""
    target = registry.rollback_target(version)
    current = registry.champion()
    try:
        gguf_path = store.get("gguf_model", target.version).path / "model.gguf"
    except FileNotFoundError as exc:
        raise Refused(f"release {target.version}: its GGUF is gone from {store.url}; cannot roll back to it") from exc
    if not gguf_path.exists() or file_sha256(gguf_path) != target.model_sha256:
        raise Refused(f"{gguf_path}: missing or changed since release {target.version}; cannot roll back to it")
    candidate = target.model_dump(include={"version", "model_sha256", "quantization", "task_accuracy", "inputs"})
    candidate["rolled_back_from"] = current.version if current else None
    return gguf_path, candidate, target.probe_request
