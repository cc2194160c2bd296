"""The training backend seam: Unsloth on an NVIDIA GPU when the `gpu` extra is installed, TRL +
PEFT everywhere else. Both load the model the trainers get, from the same settings; the trainers
and the artifacts they write are the same either way."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from llmops_assets.core.config import UnmetRequirement
from llmops_assets.training.config import TrainingSettings

# What "all-linear" means for Unsloth, which takes module names (the attention and MLP projections).
_UNSLOTH_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def select_backend(requested: str, cuda_available: bool) -> str:
    """`auto` means Unsloth when CUDA and the `gpu` extra are both present, else TRL."""
    unsloth_installed = importlib.util.find_spec("unsloth") is not None
    if requested == "unsloth":
        if not cuda_available or not unsloth_installed:
            raise UnmetRequirement(
                "backend 'unsloth' needs an NVIDIA GPU and the gpu extra (pip install -e '.[gpu]' "
                "-c constraints-gpu.txt); use backend 'auto' or 'trl' on this machine"
            )
        return "unsloth"
    if requested == "auto" and cuda_available and unsloth_installed:
        return "unsloth"
    return "trl"


def current_backend(settings: TrainingSettings) -> str:
    import torch

    backend = select_backend(settings.backend, torch.cuda.is_available())
    if backend == "unsloth":
        import unsloth  # noqa: F401  -- before TRL is imported, so that its patches apply to the trainers
    elif "unsloth" in sys.modules:
        raise UnmetRequirement("Unsloth was imported in this process and patches TRL process-wide (seen on an H100: "
                           "a LoRA run trained every weight and saved no adapter); run the trl backend in a "
                           "process of its own")
    if settings.lora.load_in_4bit and backend != "unsloth":
        raise UnmetRequirement("lora.load_in_4bit (QLoRA) needs the unsloth backend on an NVIDIA GPU; "
                           "set it to false to train LoRA on this machine")
    return backend


def load_for_training(base_dir: Path, settings: TrainingSettings, backend: str,
                      adapter_dir: Path | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft_config for the trainer). With `adapter_dir` the model carries that
    adapter, trainable (DPO continues the SFT adapter) and peft_config is None; without it the
    trainer wraps a fresh LoRA (peft_config) or, on Unsloth, the model already has one."""
    model, tokenizer = (_load_with_unsloth(base_dir, settings) if backend == "unsloth"
                        else _load_with_transformers(base_dir, settings.attention))
    if adapter_dir is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True), tokenizer, None
    lora = settings.lora
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        modules = _UNSLOTH_ALL_LINEAR if lora.target_modules == "all-linear" else lora.target_modules
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=modules,
            bias="none", use_gradient_checkpointing=False, random_state=settings.seed,
        )
        return model, tokenizer, None
    from peft import LoraConfig

    return model, tokenizer, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                        target_modules=lora.target_modules, task_type="CAUSAL_LM")


def _load_with_transformers(base_dir: Path, attention: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if attention == "auto":
        attention = "sdpa" if torch.cuda.is_available() else "eager"
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation=attention)
    return model, AutoTokenizer.from_pretrained(base_dir)


def _load_with_unsloth(base_dir: Path, settings: TrainingSettings):
    from unsloth import FastLanguageModel  # the gpu extra; imported only on CUDA

    return FastLanguageModel.from_pretrained(
        model_name=str(base_dir), max_seq_length=settings.max_seq_length, dtype=None,
        load_in_4bit=settings.lora.load_in_4bit, local_files_only=True,
    )
