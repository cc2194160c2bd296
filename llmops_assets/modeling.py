"""Loading a base model with its LoRA adapter folded in, shared by evaluation and the merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_merged(base_dir: Path, adapter_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer): the base weights with the adapter merged, in float32 on CPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    model.eval()
    return model, tokenizer
