"""Evaluation group: the fine-tuned model's tool-call accuracy on the held-out test split."""


from dagster import AssetExecutionContext, MetadataValue, asset

from llmops_assets.artifacts import read_jsonl, write_json, write_jsonl
from llmops_assets.chat import model_messages, render_prompt
from llmops_assets.evaluation.generate import generate_answers
from llmops_assets.evaluation.metrics import expected_call, score
from llmops_assets.modeling import load_merged
from llmops_assets.resources import ArtifactStoreResource, PipelineConfig, artifact_result
from llmops_assets.tools import ToolSchema


@asset(group_name="evaluation", deps=["base_model", "sft_adapter", "curated_dataset"],
       description="Exact-match accuracy of the parsed tool call on the test split, per tool, with failures.")
def eval_report(context: AssetExecutionContext, pipeline: PipelineConfig, artifacts: ArtifactStoreResource):
    settings = pipeline.settings
    base = artifacts.upstream(context, "base_model")
    adapter = artifacts.upstream(context, "sft_adapter")
    data = artifacts.upstream(context, "curated_dataset")
    test = read_jsonl(data.path / "test.jsonl")
    model, tokenizer = load_merged(base.path / "model", adapter.path / "adapter_weights")
    prompts = [render_prompt(tokenizer, model_messages(r["messages"][:-1], settings.domain.system_prompt)) for r in test]
    evaluation = settings.stages.evaluation
    answers = generate_answers(model, tokenizer, prompts, evaluation.batch_size, evaluation.max_new_tokens, context.log.info)
    result = score([expected_call(r["messages"]) for r in test], answers,
                   ToolSchema.from_file(settings.domain.tools_file), ids=[r["id"] for r in test])
    for prediction, prompt in zip(result["predictions"], prompts, strict=True):
        prediction["prompt"] = prompt
    failures = [p for p in result["predictions"] if not p["correct"]]
    report = {k: v for k, v in result.items() if k != "predictions"} | {"failures": failures}
    with artifacts.store.write("eval_report", inputs={"base_model": base.version, "sft_adapter": adapter.version,
                                                       "curated_dataset": data.version},
                               config=evaluation.model_dump(mode="json")) as out:
        write_json(out.dir / "eval_report.json", report)
        write_jsonl(out.dir / "predictions.jsonl", result["predictions"])
        out.metrics = {k: report[k] for k in ("n", "task_accuracy", "valid_json_rate")}
    context.log.info(f"task accuracy {result['task_accuracy']:.3f} on {result['n']} test examples")
    return artifact_result(
        out, **out.metrics,
        per_tool=MetadataValue.json(result["per_tool"]),
        failures=MetadataValue.json([{k: f[k] for k in ("id", "expected", "got")} for f in failures[:20]]),
    )
