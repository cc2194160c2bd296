"""Direct preference optimization: the SFT adapter trained further on (prompt, chosen, rejected)
pairs against a frozen copy of itself (TRL's DPOTrainer on a PEFT model with an adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops_assets.core.chat import model_messages, prompt_and_completion
from llmops_assets.core.costs import RunBudget
from llmops_assets.core.examples import pair_problem
from llmops_assets.core.rows import Unreadable, jsonl_rows, quarantine_entry
from llmops_assets.core.tools import ToolSchema
from llmops_assets.training.backends import current_backend, load_for_training
from llmops_assets.training.config import PreferenceSettings, TrainingSettings
from llmops_assets.training.runner import Progress, TrainingOutcome, held_out_split, run_training, trainer_arguments


def preference_sources(dpo: PreferenceSettings, feedback_pairs: Path | None) -> list[Path]:
    """The files DPO trains on: `dpo.preferences` while DPO is on, users' feedback pairs once
    there are enough (`feedback_pairs`), and with them the preference files as anchors unless
    `replay` is off (DPO on one kind of correction alone lowers right answers to neighbours)."""
    replayed = dpo.enabled or (feedback_pairs is not None and dpo.replay)
    return [*(dpo.preferences if replayed else []), *([feedback_pairs] if feedback_pairs is not None else [])]


def read_preferences(sources: list[Path], schema: ToolSchema) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs, quarantined) from JSONL files in TRL's conversational preference shape. The chosen
    answer must be a valid example; the rejected one only well-formed (it is wrong on purpose)."""
    pairs, quarantined = [], []
    for source in sources:
        if not source.is_file():
            raise ValueError(f"{source}: preference file not found (stages.training.dpo.preferences)")
        for origin, row in jsonl_rows(source):
            reason = row.reason if isinstance(row, Unreadable) else pair_problem(row, schema)
            if reason:
                quarantined.append(quarantine_entry(origin, reason, getattr(row, "raw", row)))
            else:
                pairs.append({"origin": origin, **{k: row[k] for k in ("prompt", "chosen", "rejected", "split") if k in row}})
    return pairs, quarantined


def split_pairs(pairs: list[dict[str, Any]], dpo: PreferenceSettings, seed: int) -> tuple[list, list]:
    """(train, validation): the pairs marked `split: held_out` (feedback pairs, held out by time)
    when there are any, else a seeded split; at least one pair each."""
    held_out = [p for p in pairs if p.get("split") == "held_out"]
    if held_out:
        return [p for p in pairs if p.get("split") != "held_out"], held_out
    return held_out_split(pairs, dpo.validation_share, seed, "valid preference pairs (DPO)")


def to_preference_texts(pairs: list[dict[str, Any]], tokenizer: Any, system_prompt: str) -> list[dict[str, str]]:
    """Prompt, chosen and rejected rendered exactly as SFT renders prompt and completion."""
    rendered = []
    for pair in pairs:
        prompt, chosen = prompt_and_completion(tokenizer, model_messages(pair["prompt"] + pair["chosen"], system_prompt))
        _, rejected = prompt_and_completion(tokenizer, model_messages(pair["prompt"] + pair["rejected"], system_prompt))
        rendered.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rendered


def train_dpo(base_dir: Path, sft_adapter_dir: Path, pairs: list[dict[str, Any]], settings: TrainingSettings,
              system_prompt: str, adapter_dir: Path, work_dir: Path, tracking_dir: Path,
              progress: Progress, run_budget: RunBudget | None = None) -> TrainingOutcome:
    """Continue the SFT adapter with DPO and save the result (same LoRA shape) to `adapter_dir`.
    The outcome's final evaluation holds the held-out reward accuracy the gate reads."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    dpo = settings.dpo
    backend = current_backend(settings)
    train, validation = split_pairs(pairs, dpo, settings.seed)

    def build(report_to, callbacks):
        model, tokenizer, _ = load_for_training(base_dir, settings, backend, adapter_dir=sft_adapter_dir)
        progress(f"DPO on {len(train)} preference pairs ({len(validation)} held out), beta {dpo.beta}")
        args = DPOConfig(**trainer_arguments(settings, work_dir, report_to, f"dpo-{work_dir.name}",
                                             max_steps=dpo.max_steps, learning_rate=dpo.learning_rate), beta=dpo.beta,
                         **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, dpo.sft_weight]} if dpo.sft_weight
                            else {}))
        return DPOTrainer(
            model=model, args=args, processing_class=tokenizer, callbacks=callbacks,
            train_dataset=Dataset.from_list(to_preference_texts(train, tokenizer, system_prompt)),
            eval_dataset=Dataset.from_list(to_preference_texts(validation, tokenizer, system_prompt)))

    def save(trainer):
        trainer.model.save_pretrained(adapter_dir, selected_adapters=["default"])  # not TRL's frozen "ref" copy

    return run_training(build, save, backend, settings, work_dir, tracking_dir, progress, run_budget)
