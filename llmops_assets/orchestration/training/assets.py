"""Training group: base model -> (continued pretraining) -> LoRA SFT adapter -> (DPO) adapter.
The optional stages are always in the graph; switched off they pass their input through unchanged,
so lineage and reruns look the same whichever stages a team uses."""

import json

from dagster import AssetExecutionContext, MetadataValue

from llmops_assets.core.plots import importances_png, loss_curve_png, study_history_png
from llmops_assets.core.rows import file_fingerprints
from llmops_assets.core.storage import ArtifactWriter, link_tree, read_json, read_jsonl, text_sha256, write_json, write_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.ingest import ingest
from llmops_assets.orchestration.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.orchestration.resources import (
    GPU_POOL,
    SOURCE_FILES,
    ArtifactStoreResource,
    PipelineConfig,
    artifact_result,
    markdown_image,
    retried_asset,
    run_budget,
)
from llmops_assets.training.base_models import build_base_model, build_inputs
from llmops_assets.training.cpt import perplexity_ratio, read_corpus, train_cpt
from llmops_assets.training.distributed import run_stage
from llmops_assets.training.dpo import preference_sources, read_preferences, split_pairs, train_dpo
from llmops_assets.training.runner import TrainingOutcome
from llmops_assets.training.search import search, with_params
from llmops_assets.training.sft import train_sft


@retried_asset(group_name="training",
               description="The base model as a Hugging Face folder (embedded profile, local folder or hub id).")
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


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="training", deps=["base_model"],
               pool=GPU_POOL,
               description="The model fine-tuning starts from: the base model after continued pretraining on domain "
                           "text (stages.training.continued_pretraining), or the base model itself when that is off.")
def cpt_model(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    training = pipeline.settings.stages.training
    cpt = training.continued_pretraining
    base = artifacts.upstream(context, "base_model")
    if not cpt.enabled:
        built = artifacts.build_or_reuse(context, "cpt_model", {"base_model": base.version}, {"enabled": False},
                                         lambda out: _pass_through(out, base.path / "model", "model"))
        return artifact_result(built, continued_pretraining="off: the base model, unchanged")
    documents = read_corpus(cpt.corpus)
    inputs = {"base_model": base.version, "corpus": text_sha256(json.dumps(documents))}
    config = training.stage_config("cpt")

    def build(out):
        context.log.info(f"continued pretraining on {len(documents)} documents from {[str(c) for c in cpt.corpus]}")
        outcome = run_stage(train_cpt, training.nproc_per_node, context.log.info, base_dir=base.path / "model",
                            texts=[text for _, text in documents], settings=training, model_dir=out.dir / "model",
                            work_dir=artifacts.store.work_dir("cpt_model", inputs, config),
                            tracking_dir=artifacts.home_path / "wandb", run_budget=run_budget(context, pipeline.settings, True))
        _write_training_record(out, outcome, perplexity_ratio=perplexity_ratio(outcome.validation_losses),
                               documents=len(documents))

    return _training_result(artifacts.build_or_reuse(context, "cpt_model", inputs, config, build),
                            **{SOURCE_FILES: MetadataValue.json(file_fingerprints(cpt.corpus))})


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="training", deps=["cpt_model", "curated_dataset"],
               pool=GPU_POOL,
               description="An Optuna search over SFT's learning rate, LoRA rank and alpha and steps on the train split, "
                           "pruned on validation loss, within a time budget (stages.training.hpo; off by default: "
                           "sft_adapter then trains with the configured values). Resumes after a kill.")
def hpo_study(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    training = settings.stages.training
    if not training.hpo.enabled:
        built = artifacts.build_or_reuse(context, "hpo_study", {}, {"enabled": False}, _search_off)
        return artifact_result(built, hpo="off: sft_adapter trains with the values of stages.training")
    model = artifacts.upstream(context, "cpt_model")
    data = artifacts.upstream(context, "curated_dataset")
    inputs = {"cpt_model": model.version, "curated_dataset": data.version}
    config = training.stage_config("hpo")
    study_name = f"hpo_study-{text_sha256(json.dumps([inputs, config], sort_keys=True))[:16]}"
    storage, shown = optuna_storage(context, training.hpo.storage, artifacts)

    def build(out):
        context.log.info(f"study {study_name} in {shown}: {training.hpo.trials} trials within {training.hpo.max_minutes} min")
        result = search(model.path / "model", read_jsonl(data.path / "train.jsonl"),
                        read_jsonl(data.path / "validation.jsonl"), training, settings.domain.system_prompt,
                        artifacts.store.work_dir("hpo_study", inputs, config), artifacts.home_path / "wandb", storage,
                        study_name, context.log.info, run_budget(context, settings, True))
        states = [t["state"] for t in result.trials]
        write_json(out.dir / "study.json", {"study_name": study_name, "storage": shown, **result.__dict__})
        (out.dir / "optimization_history.png").write_bytes(study_history_png(result.trials))
        (out.dir / "param_importances.png").write_bytes(importances_png(result.importances))
        out.metrics = {"best_validation_loss": result.best_value, "trials": len(states),
                       "completed": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                       "failed": states.count("FAIL"), "resumed": result.resumed}

    built = artifacts.build_or_reuse(context, "hpo_study", inputs, config, build)
    study = read_json(built.path / "study.json")
    return artifact_result(
        built, **built.metrics, best_params=MetadataValue.json(study["best_params"]),
        importances=MetadataValue.json(study["importances"]), study_name=study_name, storage=study["storage"],
        trial_table=MetadataValue.json([{k: t[k] for k in ("number", "state", "value", "params", "pruned_at")}
                                        for t in study["trials"]]),
        optimization_history=markdown_image(built.path / "optimization_history.png"),
        param_importances=markdown_image(built.path / "param_importances.png"))


def _search_off(out: ArtifactWriter) -> None:
    write_json(out.dir / "study.json", {"enabled": False})
    out.metrics = {"enabled": False}


def optuna_storage(context: AssetExecutionContext, configured: str, artifacts: ArtifactStoreResource):
    """(storage, where it is, without secrets): the configured URL; else the Dagster instance's
    PostgreSQL, in a schema of its own beside Dagster's tables (both keep an alembic_version
    table); else SQLite under the pipeline home."""
    import optuna
    import sqlalchemy

    if configured:
        return configured, sqlalchemy.engine.make_url(configured).render_as_string(hide_password=True)
    postgres = getattr(context.instance.run_storage, "postgres_url", None)
    if not postgres:
        path = artifacts.home_path / "optuna.db"
        return f"sqlite:///{path}", f"sqlite:///{path}"
    url = sqlalchemy.engine.make_url(postgres).set(drivername="postgresql+psycopg2")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE SCHEMA IF NOT EXISTS optuna"))
    engine.dispose()
    storage = optuna.storages.RDBStorage(url.render_as_string(hide_password=False),
                                         engine_kwargs={"connect_args": {"options": "-csearch_path=optuna"}})
    return storage, f"{url.render_as_string(hide_password=True)} (schema optuna)"


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="training",
               deps=["cpt_model", "curated_dataset", "hpo_study"], pool=GPU_POOL,
               description="LoRA adapter from supervised fine-tuning on the train split (loss on the answer only), "
                           "with the best values of hpo_study when the search is on.")
def sft_adapter(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    model = artifacts.upstream(context, "cpt_model")
    data = artifacts.upstream(context, "curated_dataset")
    training = settings.stages.training
    inputs = {"cpt_model": model.version, "curated_dataset": data.version}
    study = artifacts.upstream(context, "hpo_study")
    best = read_json(study.path / "study.json").get("best_params")
    if best:
        context.log.info(f"training with the best values of hpo_study {study.version}: {best}")
        training, inputs = with_params(training, best), inputs | {"hpo_study": study.version}
    config = training.stage_config("sft")

    def build(out):
        outcome = run_stage(
            train_sft, training.nproc_per_node, context.log.info, base_dir=model.path / "model",
            train_rows=read_jsonl(data.path / "train.jsonl"), validation_rows=read_jsonl(data.path / "validation.jsonl"),
            settings=training, system_prompt=settings.domain.system_prompt, adapter_dir=out.dir / "adapter_weights",
            work_dir=artifacts.store.work_dir("sft_adapter", inputs, config), tracking_dir=artifacts.home_path / "wandb",
            run_budget=run_budget(context, settings, True),
        )
        _record_base_by_version(out.dir / "adapter_weights" / "adapter_config.json", model.version)
        _write_training_record(out, outcome)

    return _training_result(artifacts.build_or_reuse(context, "sft_adapter", inputs, config, build))


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="training",
               deps=["cpt_model", "sft_adapter", "preference_pairs"], pool=GPU_POOL,
               description="The adapter evaluation and deployment take: the SFT adapter after DPO on preference pairs "
                           "(the files of stages.training.dpo, and users' feedback once there are enough pairs, with "
                           "those files beside it as anchors), or the SFT adapter itself when there are none.")
def dpo_adapter(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    training = settings.stages.training
    model = artifacts.upstream(context, "cpt_model")
    sft = artifacts.upstream(context, "sft_adapter")
    feedback = artifacts.upstream(context, "preference_pairs")
    from_feedback = read_json(feedback.path / "report.json")["ready"]
    if not training.dpo.enabled and not from_feedback:
        built = artifacts.build_or_reuse(context, "dpo_adapter", {"sft_adapter": sft.version}, {"enabled": False},
                                         lambda out: _pass_through(out, sft.path / "adapter_weights", "adapter_weights"))
        return artifact_result(built, dpo="off: the SFT adapter, unchanged")
    sources = preference_sources(training.dpo, feedback.path / "pairs.jsonl" if from_feedback else None)
    pairs, quarantined = read_preferences(sources, ToolSchema.from_file(settings.domain.tools_file))
    if not pairs:
        reasons = "; ".join(f"{q['origin']}: {q['reason']}" for q in quarantined[:3])
        raise ValueError(f"no valid preference pair in {[str(p) for p in sources]}: {reasons}")
    inputs = {"cpt_model": model.version, "sft_adapter": sft.version, "preferences": text_sha256(json.dumps(pairs)),
              **({"preference_pairs": feedback.version} if from_feedback else {})}
    config = training.stage_config("dpo")

    def build(out):
        if quarantined:
            context.log.warning(f"{len(quarantined)} preference rows quarantined, first: {quarantined[0]['origin']}: "
                                f"{quarantined[0]['reason']}")
        write_jsonl(out.dir / "quarantine.jsonl", quarantined)
        outcome = run_stage(train_dpo, training.nproc_per_node, context.log.info, base_dir=model.path / "model",
                            sft_adapter_dir=sft.path / "adapter_weights", pairs=pairs, settings=training,
                            system_prompt=settings.domain.system_prompt, adapter_dir=out.dir / "adapter_weights",
                            work_dir=artifacts.store.work_dir("dpo_adapter", inputs, config),
                            tracking_dir=artifacts.home_path / "wandb", run_budget=run_budget(context, settings, True))
        _record_base_by_version(out.dir / "adapter_weights" / "adapter_config.json", model.version)
        _write_training_record(out, outcome, preference_pairs=len(pairs), quarantined=len(quarantined),
                               held_out_pairs=len(split_pairs(pairs, training.dpo, training.seed)[1]),
                               feedback_pairs=sum(p["origin"].startswith(str(feedback.path)) for p in pairs),
                               reward_accuracy=outcome.final_evaluation.get("rewards/accuracies"))

    return _training_result(artifacts.build_or_reuse(context, "dpo_adapter", inputs, config, build),
                            **{SOURCE_FILES: MetadataValue.json(file_fingerprints(training.dpo.preferences))})


def _pass_through(out: ArtifactWriter, source, name: str) -> None:
    """A switched-off stage: its artifact holds its input's files (hard links, no copy)."""
    link_tree(source, out.dir / name)
    out.metrics = {"enabled": False}


def _write_training_record(out: ArtifactWriter, outcome: TrainingOutcome, **extra) -> None:
    """training_metrics.json, loss_curves.png and the manifest's metrics of a training stage."""
    metrics = outcome.to_json() | extra
    write_json(out.dir / "training_metrics.json", metrics)
    (out.dir / "loss_curves.png").write_bytes(loss_curve_png(outcome.train_losses, outcome.eval_points))
    out.metrics = {k: v for k, v in metrics.items() if not k.endswith("_history") and k != "final_evaluation"}


def _training_result(built, **metadata):
    metrics = read_json(built.path / "training_metrics.json")
    return artifact_result(
        built, **{k: v for k, v in built.metrics.items() if isinstance(v, (int, float, str))},
        loss_curves=markdown_image(built.path / "loss_curves.png"),
        validation_loss_history=MetadataValue.json(metrics["validation_loss_history"]),
        tracking=MetadataValue.json(metrics.get("tracking") or {"wandb": "disabled"}),
        **metadata,
    )


def _record_base_by_version(adapter_config, model_version: str) -> None:
    """PEFT writes the base model's absolute path; record the artifact version instead, so the
    adapter stays valid when the store moves (object store, another machine)."""
    config = read_json(adapter_config)
    config["base_model_name_or_path"] = f"cpt_model@{model_version}"
    write_json(adapter_config, config)
