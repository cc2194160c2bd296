"""LoRA supervised fine-tuning: prompt/completion pairs, loss on the assistant answer only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops_assets.core.chat import model_messages, prompt_and_completion
from llmops_assets.core.costs import RunBudget
from llmops_assets.training.backends import current_backend, load_for_training
from llmops_assets.training.config import TrainingSettings
from llmops_assets.training.runner import Progress, TrainingOutcome, run_training, trainer_arguments


def to_prompt_completion(rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str) -> list[dict[str, str]]:
    pairs = []
    for row in rows:
        prompt, completion = prompt_and_completion(tokenizer, model_messages(row["messages"], system_prompt))
        pairs.append({"prompt": prompt, "completion": completion})
    return pairs


def train_sft(
    base_dir: Path,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    settings: TrainingSettings,
    system_prompt: str,
    adapter_dir: Path,
    work_dir: Path,
    tracking_dir: Path,
    progress: Progress,
    run_budget: RunBudget | None = None,
    callbacks: list | None = None,
) -> TrainingOutcome:
    """Train a LoRA adapter on `base_dir` and save it to `adapter_dir`.

    Checkpoints go to `work_dir`, which must be the same for the same inputs and settings: a
    call after a crash or kill resumes from its last checkpoint. It is removed on success.
    """
    backend = current_backend(settings)

    def build(report_to, runner_callbacks):
        return build_sft_trainer(base_dir, train_rows, validation_rows, settings, system_prompt, work_dir,
                                 report_to, [*runner_callbacks, *(callbacks or [])], backend)

    return run_training(build, lambda trainer: trainer.model.save_pretrained(adapter_dir), backend,
                        settings, work_dir, tracking_dir, progress, run_budget)


def build_sft_trainer(base_dir: Path, train_rows, validation_rows, settings: TrainingSettings, system_prompt: str,
                      work_dir: Path, report_to: list[str], callbacks: list, backend: str = "trl") -> Any:
    """The pipeline's TRL SFTTrainer: LoRA, loss on the completion only, the shared arguments of
    `trainer_arguments` (benchmarked in bench/training.py), early stopping when configured."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig

    model, tokenizer, lora = load_for_training(base_dir, settings, backend)
    train_set = Dataset.from_list(to_prompt_completion(train_rows, tokenizer, system_prompt))
    validation_set = Dataset.from_list(to_prompt_completion(validation_rows, tokenizer, system_prompt))
    early_stopping = settings.early_stopping_patience > 0
    args = SFTConfig(
        **trainer_arguments(settings, work_dir, report_to, f"sft-{work_dir.name}",
                            max_steps=settings.max_steps, learning_rate=settings.learning_rate),
        completion_only_loss=True,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
    )
    if early_stopping:
        callbacks = [*callbacks, EarlyStoppingCallback(settings.early_stopping_patience, settings.early_stopping_min_delta)]
    return plain_loss_trainer_class()(model=model, args=args, train_dataset=train_set, eval_dataset=validation_set,
                                     processing_class=tokenizer, peft_config=lora, callbacks=callbacks)


def plain_loss_trainer_class():
    """SFTTrainer's data preparation (prompt/completion, loss on the completion only) with
    transformers' own causal-LM loss. TRL's fused LM head, which also computes entropy and token
    accuracy for its logs, made each CPU step ~1.4x slower (bench/training.py)."""
    from transformers import Trainer
    from trl import SFTTrainer

    class PipelineSFTTrainer(SFTTrainer):
        tokens_seen = 0  # summed on the training device: reading it back each step stalls a GPU

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:  # Unsloth packs padding-free batches: no mask, no padding to leave out
                mask = inputs.get("attention_mask")
                self.tokens_seen = self.tokens_seen + (mask.sum() if mask is not None else inputs["input_ids"].numel())
            if return_outputs or not model.training or not answer_only_head_applies(model):
                return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            with self.accelerator.autocast():  # the wrapped forward's mixed precision, which this path bypasses
                loss = answer_only_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss scales it under DDP
            return loss

    return PipelineSFTTrainer


def answer_only_head_applies(model) -> bool:
    """A plain decoder whose logits are its LM head's output (no soft-capping or scaling), wrapped
    by PEFT: what `answer_only_loss` reproduces."""
    config = getattr(model, "config", None)
    return (hasattr(model, "get_base_model") and config is not None
            and getattr(config, "final_logit_softcapping", None) is None and getattr(config, "logit_scale", None) is None
            and hasattr(model.get_base_model(), "model"))


def answer_only_loss(model, inputs, num_items_in_batch=None):
    """transformers' causal-LM loss with the vocabulary projection computed only where there is a
    label: the prompt's positions (most of each example) never need their 49k logits."""
    import torch.nn.functional as F

    labels = inputs["labels"]
    hidden = model.get_base_model().model(input_ids=inputs["input_ids"],
                                          attention_mask=inputs.get("attention_mask")).last_hidden_state
    targets = labels[:, 1:]
    kept = targets != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][kept]).float()
    loss = F.cross_entropy(logits, targets[kept], reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else kept.sum())
