"""Evaluation group: the candidate against the test split, the safety suite, the champion and a judge."""


from dagster import AssetExecutionContext, MetadataValue

from llmops_assets.core.contracts import EvalReport
from llmops_assets.core.plots import confusion_png
from llmops_assets.core.releases import Release
from llmops_assets.core.storage import Artifact, read_json, read_jsonl, write_json, write_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.evaluation.gates import decision, evaluation_verdicts
from llmops_assets.evaluation.run import Baseline, evaluate
from llmops_assets.evaluation.safety import load_suite
from llmops_assets.orchestration.conditions import AFTER_UPSTREAM_GATES
from llmops_assets.orchestration.resources import (
    ArtifactStoreResource,
    PipelineConfig,
    Refused,
    artifact_result,
    markdown_image,
    retried_asset,
)


@retried_asset(automation_condition=AFTER_UPSTREAM_GATES, group_name="evaluation",
               deps=["base_model", "cpt_model", "dpo_adapter", "curated_dataset"],
               description="Tool-call accuracy on the test split, safety suite, regression against the champion (the "
                           "same runtime and precision; exact McNemar test) and an LLM judge with its measured agreement.")
def eval_report(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    evaluation = settings.stages.evaluation
    base = artifacts.upstream(context, "base_model")
    model = artifacts.upstream(context, "cpt_model")
    adapter = artifacts.upstream(context, "dpo_adapter")
    data = artifacts.upstream(context, "curated_dataset")
    champion = artifacts.registry.last_champion()
    inputs = {"base_model": base.version, "cpt_model": model.version, "dpo_adapter": adapter.version,
              "curated_dataset": data.version,
              "champion": champion.version if champion else "base model"}
    # The judge auto resolves to differs by machine: the evaluation is keyed by what ran.
    config = evaluation.model_dump(mode="json") | {"judge": evaluation.judge.model_dump(mode="json")
                                                   | {"kind": evaluation.judge.resolved_kind()}}

    def build(out):
        result = evaluate(model.path / "model", adapter.path / "adapter_weights", base.path / "model",
                          read_jsonl(data.path / "test.jsonl"),
                          load_suite(evaluation.safety_suite), settings.domain.system_prompt,
                          ToolSchema.from_file(settings.domain.tools_file), evaluation,
                          _baseline(artifacts, champion, base), context.log.info, _answers_cache(context, artifacts))
        report = result.report
        verdicts = evaluation_verdicts(report, evaluation)
        report["decision"] = decision(verdicts)
        report["gates"] = {name: v.__dict__ for name, v in verdicts.items()}
        write_json(out.dir / "eval_report.json", EvalReport.model_validate(report).model_dump(mode="json"))
        write_json(out.dir / "llm_judge_scores.json", result.judge)
        write_json(out.dir / "regression_analysis.json", result.regression)
        write_jsonl(out.dir / "predictions.jsonl", result.predictions)
        write_json(out.dir / RECORDED_ANSWERS, result.answers)
        (out.dir / "confusion_matrix.png").write_bytes(confusion_png(report["confusion"]))
        out.metrics = {k: report[k] for k in ("n", "task_accuracy", "valid_json_rate", "llm_judge_score",
                                              "judge_agreement", "decision")}

    evaluated = artifacts.build_or_reuse(context, "eval_report", inputs, config, build,
                                         equivalent=_evaluation_of_served(artifacts, champion, inputs, config))
    report = read_json(evaluated.path / "eval_report.json")
    judged = (f"judge {report['llm_judge_score']:.3f} (agreement {report['judge_agreement']:.2f})"
              if report["llm_judge_score"] is not None else "judge off")
    context.log.info(f"task accuracy {report['task_accuracy']:.3f}, {judged}, "
                     f"safety {report['safety_check']['pass_rate']:.2f}, decision {report['decision']}")
    return artifact_result(
        evaluated, **evaluated.metrics,
        safety_pass_rate=report["safety_check"]["pass_rate"],
        over_refusal_rate=report["safety_check"]["over_refusal_rate"],
        baseline_comparison=MetadataValue.json(report["baseline_comparison"]),
        text_answers=MetadataValue.json(report.get("text_answers") or {}),
        per_tool=MetadataValue.json(report["per_tool"]),
        confusion_matrix=markdown_image(evaluated.path / "confusion_matrix.png"),
        failures=MetadataValue.json([{k: f[k] for k in ("id", "expected", "got")} for f in report["failures"][:20]]),
    )


def _baseline(artifacts: ArtifactStoreResource, champion: Release | None, base: Artifact) -> Baseline:
    """The release the candidate is compared with, its merged model found through its lineage in
    the artifact store, served or stopped; the base model while nothing was ever deployed. A
    champion whose model is gone fails here: comparing with the base model instead would let any
    candidate pass."""
    if champion is None:
        return Baseline("base model", base.path / "model", f"base_model@{base.version}")
    try:
        gguf = artifacts.store.get("gguf_model", champion.version)
        merged = artifacts.store.get("merged_model", gguf.manifest["inputs"]["merged_model"])
    except FileNotFoundError as exc:
        raise Refused(f"the champion {champion.version} (release {champion.release_number}) has no merged model "
                           f"in {artifacts.store.url} any more ({exc}): regression against it cannot be measured; "
                           "restore the store or roll back to a release whose artifacts exist") from exc
    state = "served" if champion.status == "serving" else "stopped"
    evaluated = merged.manifest["inputs"].get("eval_report")
    recorded = (artifacts.store.get("eval_report", evaluated).path / RECORDED_ANSWERS
                if evaluated and artifacts.store.exists("eval_report", evaluated) else None)
    return Baseline(f"champion {champion.version} ({state})", merged.path / "model", f"merged_model@{merged.version}",
                    recorded)


RECORDED_ANSWERS = "answers.json"  # the candidate's answers, in its eval_report: as a champion later, its own


BASELINE_ANSWERS = "baseline_answers"  # in the artifact store only: a cache, not an asset


def _answers_cache(context, artifacts: ArtifactStoreResource):
    """The baseline's answers kept in the artifact store by (model version, prompts, length): a
    champion or base model answers a test set once, however many candidates it is compared with."""

    def cached(key: dict[str, str], generate) -> list[str]:
        found = artifacts.store.find(BASELINE_ANSWERS, key, {})
        if found is not None:
            context.log.info(f"{key['model']} answered these {found.metrics['n']} prompts before: reusing its answers")
            return read_jsonl(found.path / "answers.jsonl")
        answers = generate()
        with artifacts.store.write(BASELINE_ANSWERS, inputs=key, config={}) as out:
            write_jsonl(out.dir / "answers.jsonl", answers)
            out.metrics = {"n": len(answers)}
        return answers

    return cached


def _evaluation_of_served(artifacts: ArtifactStoreResource, champion: Release | None, inputs: dict, config: dict):
    """When the candidate is what is served already (same adapter, data and evaluation config),
    the evaluation that gated it stands: comparing a model with itself would say nothing."""
    version = champion.inputs.get("eval_report") if champion else None
    if not version or not artifacts.store.exists("eval_report", version):
        return None
    served = artifacts.store.get("eval_report", version)
    same = all(served.manifest["inputs"].get(k) == inputs[k]
               for k in ("base_model", "cpt_model", "dpo_adapter", "curated_dataset"))
    return served if same and served.manifest["config"] == config else None
