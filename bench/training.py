"""Training-step benchmark: the pipeline's SFT trainer vs a plain `transformers.Trainer` loop on
the same LoRA model, data, batch, hyperparameters and precision, and vs TRL SFTTrainer with its
defaults; each of the pipeline's speed levers undone in turn (the LM head over every position,
SDPA attention, LoRA dropout 0.05); on an NVIDIA GPU with the `gpu` extra also the pipeline on the
Unsloth backend. Each run in its own process, interleaved in rounds so that machine noise hits all
variants alike.

    .venv/bin/python bench/training.py [--base-model smollm2-135m-instruct] [--steps 8] [--rounds 2]

Prints examples/s and tokens/s of each and the ratios. Target: pipeline >= 1.2x the plain Trainer
(and Unsloth above the pipeline on TRL, where it runs).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmops_assets.core.chat import model_messages, prompt_and_completion
from llmops_assets.core.storage import read_jsonl
from llmops_assets.data.synth import SEED_FILE
from llmops_assets.settings import load_settings
from llmops_assets.training import sft
from llmops_assets.training.backends import select_backend
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


def pipeline(base: Path, rows: list[dict], settings, system_prompt: str, out: Path, **changes):
    """The pipeline's trainer, with `changes` to its settings (`lm_head="full"`: every position's logits)."""
    if changes.pop("lm_head", None) == "full":
        sft.answer_only_head_applies = lambda model: False  # this child process only
    if "dropout" in changes:
        changes["lora"] = settings.lora.model_copy(update={"dropout": changes.pop("dropout")})
    return build_sft_trainer(base, rows, rows[:8], settings.model_copy(update=changes), system_prompt, out, [], [])


WARMUP_STEPS = 3
VARIANTS = {
    "pipeline": pipeline,
    "plain Trainer": plain_trainer,
    "- full LM head": functools.partial(pipeline, lm_head="full"),
    "- SDPA": functools.partial(pipeline, attention="sdpa"),
    "- dropout 0.05": functools.partial(pipeline, dropout=0.05),
    "TRL defaults": trl_defaults,
    "pipeline Unsloth": lambda base, rows, settings, system, out: build_sft_trainer(
        base, rows, rows[:8], settings, system, out, [], [], backend="unsloth"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default=None, help="a base model spec (default: the pipeline config's)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--time-one", nargs=2, metavar=("VARIANT", "BASE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = load_settings()
    spec = args.base_model or config.stages.training.base_model
    settings = config.stages.training.model_copy(update={
        "max_steps": args.steps, "eval_steps": 10 * args.steps, "base_model": spec,
        "tracking": config.stages.training.tracking.model_copy(update={"wandb": "disabled"})})
    rows = read_jsonl(SEED_FILE)[: args.steps * settings.batch_size]
    system = config.domain.system_prompt
    if args.time_one:  # a child: one variant, timed in a fresh process
        name, base = args.time_one[0], Path(args.time_one[1])
        trainer = VARIANTS[name](base, rows, settings, system, Path(tempfile.mkdtemp(prefix="bench-training-run-")))
        clock = _step_clock(WARMUP_STEPS)
        trainer.add_callback(clock)
        trainer.train()
        print(json.dumps({"seconds": time.perf_counter() - clock.started, "steady": clock.steady_seconds()}))
        return
    base = Path(tempfile.mkdtemp(prefix="bench-training-")) / "base"
    build_base_model(spec, base, [m.get("content") or "" for r in rows for m in r["messages"]] + [system])
    tokens = _tokens_per_example(base, rows, system)
    # Each run in its own process: Unsloth patches transformers and TRL process-wide when it loads.
    names = [n for n in VARIANTS if n != "pipeline Unsloth" or select_backend("auto", _cuda_available()) == "unsloth"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    steady: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        for name in names:
            child = subprocess.run([sys.executable, __file__, "--base-model", spec, "--steps", str(args.steps),
                                    "--time-one", name, str(base)], capture_output=True, text=True)
            if child.returncode:
                raise SystemExit(f"{name} failed:\n{child.stderr[-3000:]}")
            timing = json.loads(child.stdout.strip().splitlines()[-1])
            seconds[name].append(timing["seconds"])
            steady[name].append(timing["steady"])
            print(f"round {round_number + 1} {name:16s} {seconds[name][-1]:6.1f} s", flush=True)
    examples = args.steps * settings.batch_size
    baseline = statistics.median(seconds["plain Trainer"])
    steady_baseline = statistics.median(steady["plain Trainer"])
    print(f"\n{spec}, {args.steps} steps x batch {settings.batch_size}, ~{tokens:.0f} tokens/example, median of "
          f"{args.rounds}; steady = after the first {WARMUP_STEPS} steps (compilation, caches)")
    for name, values in seconds.items():
        median, steady_median = statistics.median(values), statistics.median(steady[name])
        print(f"{name:16s} {examples / median:6.2f} examples/s {examples * tokens / median:8.0f} tokens/s "
              f"{baseline / median:5.2f}x plain Trainer | steady {steady_baseline / steady_median:5.2f}x")


def _step_clock(warmup: int):
    """A trainer callback with the wall time of the whole `train()` and of the steps after `warmup`."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.started = time.perf_counter()
            self.warm_at: tuple[int, float] = (0, self.started)
            self.ended: tuple[int, float] = (0, self.started)

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if state.global_step == warmup:
                self.warm_at = (state.global_step, now)
            self.ended = (state.global_step, now)

        def steady_seconds(self) -> float:
            """Seconds for all the steps at the per-step rate after the warm-up."""
            (warm_step, warm_time), (last_step, last_time) = self.warm_at, self.ended
            return (last_time - warm_time) / (last_step - warm_step) * last_step

    return StepClock()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _tokens_per_example(base: Path, rows: list[dict], system: str) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = ["".join(prompt_and_completion(tokenizer, model_messages(r["messages"], system))) for r in rows]
    return statistics.fmean(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


if __name__ == "__main__":
    main()
