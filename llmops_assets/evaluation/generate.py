"""Greedy answers of a transformers model, batched with left padding."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def generate_answers(model: Any, tokenizer: Any, prompts: list[str], batch_size: int,
                     max_new_tokens: int, progress: Callable[[str], None]) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    answers: list[str] = []
    started = time.monotonic()
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        answers.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        done = len(answers)
        elapsed = time.monotonic() - started
        progress(f"generated {done}/{len(prompts)} answers, {done / elapsed:.1f}/s, "
                 f"ETA {(len(prompts) - done) * elapsed / done:.0f}s")
    return answers
