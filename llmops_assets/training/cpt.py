"""Continued pretraining: a LoRA trained with the plain causal-LM loss on raw domain text, then
merged, so that supervised fine-tuning starts from a model that has read the domain."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from llmops_assets.core.costs import RunBudget
from llmops_assets.core.modeling import save_merged
from llmops_assets.training.backends import current_backend, load_for_training
from llmops_assets.training.config import ContinuedPretrainingSettings, TrainingSettings
from llmops_assets.training.runner import Progress, TrainingOutcome, held_out_split, run_training, trainer_arguments

TEXT_SUFFIXES = (".txt", ".md")


def read_corpus(sources: list[Path]) -> list[tuple[str, str]]:
    """(origin, text) of every document: .txt/.md files (or folders of them) whole, .jsonl rows by
    their `text` field. A missing, unreadable or empty source fails naming the file (and line)."""
    documents = []
    for source in sources:
        files = sorted(p for p in source.rglob("*") if p.suffix in (*TEXT_SUFFIXES, ".jsonl")) if source.is_dir() else [source]
        if not files:
            raise ValueError(f"{source}: no .txt, .md or .jsonl file in the continued-pretraining corpus")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{file}: cannot read the continued-pretraining corpus: {exc}") from exc
            if file.suffix == ".jsonl":
                documents += [(f"{file}:{n}", _text_field(file, n, line)) for n, line in enumerate(text.splitlines(), 1)
                              if line.strip()]
            elif text.strip():
                documents.append((str(file), text))
    if not documents:
        raise ValueError(f"the continued-pretraining corpus {[str(s) for s in sources]} holds no text")
    return documents


def _text_field(file: Path, number: int, line: str) -> str:
    try:
        text = json.loads(line)["text"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{file}:{number}: a corpus row must be a JSON object with a string 'text' ({exc})") from exc
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{file}:{number}: 'text' must be a non-empty string")
    return text


def corpus_blocks(texts: list[str], tokenizer: Any, block_size: int) -> list[list[int]]:
    """The documents tokenized end to end (EOS between them) and cut into `block_size` blocks;
    a last block shorter than half a block is dropped."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    return [b for b in blocks if len(b) * 2 >= block_size]


def split_blocks(blocks: list[list[int]], cpt: ContinuedPretrainingSettings, seed: int) -> tuple[list, list]:
    """(train, validation), seeded; at least one block each."""
    return held_out_split(blocks, cpt.validation_share, seed,
                          f"continued-pretraining blocks of {cpt.block_size} tokens (add text or lower block_size)")


def train_cpt(base_dir: Path, texts: list[str], settings: TrainingSettings, model_dir: Path, work_dir: Path,
              tracking_dir: Path, progress: Progress, run_budget: RunBudget | None = None) -> TrainingOutcome:
    """Continue pretraining `base_dir` on `texts` and save the merged model to `model_dir`. The
    held-out loss before training is the first validation point (step 0), so the outcome tells
    whether the domain text got more predictable (`perplexity_ratio`)."""
    from datasets import Dataset
    from trl import SFTConfig

    from llmops_assets.training.sft import plain_loss_trainer_class

    cpt = settings.continued_pretraining
    backend = current_backend(settings)
    before: dict[str, float] = {}

    def build(report_to, callbacks):
        model, tokenizer, lora = load_for_training(base_dir, settings, backend)
        train, validation = split_blocks(corpus_blocks(texts, tokenizer, cpt.block_size), cpt, settings.seed)
        progress(f"continued pretraining on {len(train)} blocks of {cpt.block_size} tokens ({len(validation)} held out)")
        args = SFTConfig(**trainer_arguments(settings, work_dir, report_to, f"cpt-{work_dir.name}",
                                             max_steps=cpt.max_steps, learning_rate=cpt.learning_rate), packing=False)
        trainer = plain_loss_trainer_class()(
            model=model, args=args, processing_class=tokenizer, peft_config=lora, callbacks=callbacks,
            train_dataset=Dataset.from_dict({"input_ids": train}),
            eval_dataset=Dataset.from_dict({"input_ids": validation}))
        before["eval_loss"] = trainer.evaluate()["eval_loss"]  # the untouched model (train() resets the history)
        return trainer

    def save(trainer):
        merged = trainer.model.merge_and_unload()
        merged.eval()
        save_merged(merged, trainer.processing_class, base_dir, model_dir)

    outcome = run_training(build, save, backend, settings, work_dir, tracking_dir, progress, run_budget)
    outcome.eval_points.insert(0, (0, before["eval_loss"]))
    return outcome


def perplexity_ratio(validation_losses: list[float]) -> float:
    """Held-out perplexity at the end over perplexity before training (step 0): below 1 when
    the domain text became more predictable."""
    return math.exp(validation_losses[-1] - validation_losses[0])
