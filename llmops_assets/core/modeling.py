"""Loading the base model, alone or with its LoRA adapter folded in, and saving a merged one
(continued pretraining, evaluation, judge, merge)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def load_base(base_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 on CPU, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def load_merged(base_dir: Path, adapter_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer): the base weights with the adapter merged in."""
    from peft import PeftModel

    base, tokenizer = load_base(base_dir)
    model = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    model.eval()
    return model, tokenizer


def save_merged(model: object, tokenizer: object, base_dir: Path, out_dir: Path) -> None:
    """Write the merged model and its tokenizer; keep SentencePiece's tokenizer.model, which
    transformers v5 does not write but the GGUF converter needs."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if (base_dir / "tokenizer.model").exists():
        shutil.copy2(base_dir / "tokenizer.model", out_dir / "tokenizer.model")
