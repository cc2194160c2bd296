"""Evaluation benchmark: the pipeline's batched generation vs a naive per-example generate loop.

    .venv/bin/python bench/evaluation.py [--examples 32] [--batch-size 16]

Same merged model (latest cpt_model + dpo_adapter in LLMOPS_HOME), same test prompts, same
greedy settings, both in this process. Prints examples/s of each and the ratio (target >= 3x).
"""

from __future__ import annotations

import argparse
import time

from llmops_assets.core.chat import model_messages, render_prompt
from llmops_assets.core.modeling import load_merged
from llmops_assets.core.storage import read_jsonl
from llmops_assets.evaluation.generate import generate_answers
from llmops_assets.orchestration.resources import ArtifactStoreResource
from llmops_assets.settings import load_settings


def naive(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    answers = []
    for prompt in prompts:
        batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        answers.append(tokenizer.decode(output[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    settings = load_settings()
    store = ArtifactStoreResource().store
    latest = {name: store.versions(name)[-1] for name in ("cpt_model", "dpo_adapter", "curated_dataset")}
    model, tokenizer = load_merged(latest["cpt_model"].path / "model", latest["dpo_adapter"].path / "adapter_weights")
    rows = read_jsonl(latest["curated_dataset"].path / "test.jsonl")[:args.examples]
    prompts = [render_prompt(tokenizer, model_messages(r["messages"][:-1], settings.domain.system_prompt)) for r in rows]
    max_new = settings.stages.evaluation.max_new_tokens
    timings = {}
    for name, run in (("naive loop", lambda: naive(model, tokenizer, prompts, max_new)),
                      ("pipeline (batched)", lambda: generate_answers(model, tokenizer, prompts, args.batch_size,
                                                                      max_new, lambda _: None))):
        started = time.perf_counter()
        answers = run()
        timings[name] = (time.perf_counter() - started, answers)
    (naive_s, naive_answers), (batched_s, batched_answers) = timings.values()
    same = sum(a.strip() == b.strip() for a, b in zip(naive_answers, batched_answers, strict=True))
    print(f"{len(prompts)} test prompts, max_new_tokens {max_new}, batch size {args.batch_size}")
    for name, (seconds, _) in timings.items():
        print(f"{name:20} {len(prompts) / seconds:7.2f} examples/s ({seconds:.1f}s)")
    print(f"speed-up: {naive_s / batched_s:.2f}x (target >= 3x); identical answers: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
