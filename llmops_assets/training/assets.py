"""Training group: the base model as an HF folder, and the LoRA SFT adapter trained on it."""


from dagster import AssetExecutionContext, MetadataValue, asset

from llmops_assets.artifacts import read_json, read_jsonl, write_json
from llmops_assets.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.data.ingest import ingest
from llmops_assets.plots import loss_curve_png, markdown_image
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig, artifact_result
from llmops_assets.settings import KubernetesSettings, config_path, load_settings
from llmops_assets.training.base_models import build_base_model, build_inputs
from llmops_assets.training.sft import train_sft


def kubernetes_op_tags() -> dict:
    """What the training step requests under dagster-k8s (`stages.training.kubernetes` in the
    config file the code location loads); ignored by the local executors."""
    path = config_path()
    wanted = load_settings(path).stages.training.kubernetes if path.exists() else KubernetesSettings()
    limits = {"cpu": wanted.cpu, "memory": wanted.memory} | ({"nvidia.com/gpu": str(wanted.gpus)} if wanted.gpus else {})
    return {"dagster-k8s/config": {"container_config": {"resources": {"requests": limits, "limits": limits}}}}


@asset(group_name="training", description="The base model as a Hugging Face folder (embedded profile, local folder or hub id).")
def base_model(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    spec = settings.stages.training.base_model
    # Every source format, read the way curation reads it (a tokenizer built from scratch needs it).
    corpus = [m.get("content") or "" for record in ingest(settings.stages.data.sources).records
              for m in record["messages"] if isinstance(m, dict)] + [settings.domain.system_prompt]

    def build(out):
        context.log.info(f"building base model {spec!r}")
        out.metrics = build_base_model(spec, out.dir / "model", corpus)

    built = artifacts.build_or_reuse(context, "base_model", build_inputs(spec, corpus), {"base_model": spec}, build)
    return artifact_result(built, **{k: str(v) for k, v in built.metrics.items()})


@asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="training", deps=["base_model", "curated_dataset"],
       op_tags=kubernetes_op_tags(),
       description="LoRA adapter from supervised fine-tuning on the train split (loss on the answer only).")
def sft_adapter(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    base = artifacts.upstream(context, "base_model")
    data = artifacts.upstream(context, "curated_dataset")
    training = settings.stages.training
    inputs = {"base_model": base.version, "curated_dataset": data.version}
    config = training.model_dump(mode="json", exclude={"tracking", "kubernetes"})  # neither changes the adapter

    def build(out):
        outcome = train_sft(
            base.path / "model", read_jsonl(data.path / "train.jsonl"), read_jsonl(data.path / "validation.jsonl"),
            training, settings.domain.system_prompt, out.dir / "adapter_weights",
            artifacts.store.work_dir("sft_adapter", inputs, config), artifacts.home_path / "wandb", context.log.info,
        )
        _record_base_by_version(out.dir / "adapter_weights" / "adapter_config.json", base.version)
        metrics = outcome.to_json()
        write_json(out.dir / "training_metrics.json", metrics)
        (out.dir / "loss_curves.png").write_bytes(loss_curve_png(outcome.train_losses, outcome.eval_points))
        out.metrics = {k: v for k, v in metrics.items() if not k.endswith("_history")}

    adapter = artifacts.build_or_reuse(context, "sft_adapter", inputs, config, build)
    metrics = read_json(adapter.path / "training_metrics.json")
    return artifact_result(
        adapter, **{k: v for k, v in adapter.metrics.items() if isinstance(v, (int, float, str))},
        loss_curves=markdown_image(adapter.path / "loss_curves.png"),
        validation_loss_history=MetadataValue.json(metrics["validation_loss_history"]),
        tracking=MetadataValue.json(metrics.get("tracking") or {"wandb": "disabled"}),
    )


def _record_base_by_version(adapter_config, base_version: str) -> None:
    """PEFT writes the base model's absolute path; record the artifact version instead, so the
    adapter stays valid when the store moves (object store, another machine)."""
    config = read_json(adapter_config)
    config["base_model_name_or_path"] = f"base_model@{base_version}"
    write_json(adapter_config, config)
