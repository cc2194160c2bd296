"""Training-step benchmark: the pipeline's SFT trainer vs a plain `transformers.Trainer` loop on
the same LoRA model, data, batch and precision, and vs TRL SFTTrainer with its defaults;
interleaved in one run so that machine noise hits all three alike.

    .venv/bin/python bench/training.py [--base-model smollm2-135m-instruct] [--steps 8] [--rounds 2]

Prints examples/s and tokens/s of each and the ratios. Target: pipeline >= 1.0x the plain Trainer.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from llmops_assets.artifacts import read_jsonl
from llmops_assets.chat import model_messages, prompt_and_completion
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.settings import load_settings
from llmops_assets.training.base_models import build_base_model
from llmops_assets.training.sft import build_sft_trainer


def plain_trainer(base: Path, rows: list[dict], settings, system_prompt: str, out: Path):
    """A hand-written causal-LM LoRA loop with transformers.Trainer: loss on the answer only."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(base)
    examples = []
    for row in rows:
        prompt, completion = prompt_and_completion(tokenizer, model_messages(row["messages"], system_prompt))
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[: settings.max_seq_length]
        labels = ([-100] * len(prompt_ids) + answer_ids)[: settings.max_seq_length]
        examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = settings.lora
    model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                             target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(out), max_steps=settings.max_steps, per_device_train_batch_size=settings.batch_size,
                             learning_rate=settings.learning_rate, use_cpu=not torch.cuda.is_available(),
                             bf16=settings.bf16_on_cpu, lr_scheduler_type="cosine", warmup_steps=5, logging_steps=1000,
                             save_strategy="no", report_to=[], seed=settings.seed, disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                   data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))


def trl_defaults(base: Path, rows: list[dict], settings, system_prompt: str, out: Path):
    """TRL SFTTrainer as its documentation starts it: default SFTConfig, LoRA, prompt/completion data."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(base)
    pairs = [dict(zip(("prompt", "completion"), prompt_and_completion(tokenizer, model_messages(r["messages"], system_prompt)),
                      strict=True)) for r in rows]
    lora = settings.lora
    args = SFTConfig(output_dir=str(out), max_steps=settings.max_steps, per_device_train_batch_size=settings.batch_size,
                     use_cpu=not torch.cuda.is_available(), report_to=[], save_strategy="no", disable_tqdm=True,
                     max_length=settings.max_seq_length)
    return SFTTrainer(model=str(base), args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                      peft_config=LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules,
                                             task_type="CAUSAL_LM"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default=None, help="a base model spec (default: the pipeline config's)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = load_settings()
    spec = args.base_model or config.stages.training.base_model
    settings = config.stages.training.model_copy(update={
        "max_steps": args.steps, "eval_steps": 10 * args.steps, "base_model": spec,
        "tracking": config.stages.training.tracking.model_copy(update={"wandb": "disabled"})})
    rows = read_jsonl(SEED_FILE)[: args.steps * settings.batch_size]
    system = config.domain.system_prompt
    scratch = Path(tempfile.mkdtemp(prefix="bench-training-"))
    base = scratch / "base"
    build_base_model(spec, base, [m.get("content") or "" for r in rows for m in r["messages"]] + [system])
    tokens = _tokens_per_example(base, rows, system)
    variants = {
        "pipeline": lambda out: build_sft_trainer(base, rows, rows[:8], settings, system, out, [], []),
        "plain Trainer": lambda out: plain_trainer(base, rows, settings, system, out),
        "TRL defaults": lambda out: trl_defaults(base, rows, settings, system, out),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        for name, make in variants.items():
            trainer = make(scratch / f"{name}-{round_number}".replace(" ", "_"))
            started = time.perf_counter()
            trainer.train()
            seconds[name].append(time.perf_counter() - started)
            print(f"round {round_number + 1} {name:14s} {seconds[name][-1]:6.1f} s", flush=True)
    examples = args.steps * settings.batch_size
    baseline = statistics.median(seconds["plain Trainer"])
    print(f"\n{spec}, {args.steps} steps x batch {settings.batch_size}, ~{tokens:.0f} tokens/example, median of {args.rounds}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:14s} {examples / median:6.2f} examples/s {examples * tokens / median:8.0f} tokens/s "
              f"{baseline / median:5.2f}x plain Trainer")


def _tokens_per_example(base: Path, rows: list[dict], system: str) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = ["".join(prompt_and_completion(tokenizer, model_messages(r["messages"], system))) for r in rows]
    return statistics.fmean(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


if __name__ == "__main__":
    main()
