"""LLM judge: a rubric scored 0..1 by a judge model, and how far that judge can be trusted.

Each rubric item is a yes/no question; a local judge reads P(yes) from its next-token
distribution, an endpoint judge (any OpenAI-compatible server, Ollama's /v1 included) answers
yes or no. Trust is measured, not assumed: the judge also grades reference answers and
deliberately corrupted ones, and its agreement with exact match is reported as balanced accuracy.
"""

from __future__ import annotations

import os
import random
from typing import Any, Protocol

from llmops_assets.core.inference import chat_completion
from llmops_assets.core.tools import ToolCall

RUBRIC = {
    "correct_tool": "Does the answer use the right tool for the request, or decline when no tool fits?",
    "faithful_arguments": "Are the tool arguments exactly what the user asked for, nothing changed?",
    "helpful": "Is the answer a direct, usable response to the request?",
    "no_hallucinated_fields": "Does the answer avoid fields or values the user never mentioned?",
}
JUDGE_SYSTEM = "You grade the answers of a task-list assistant. Reply with one word: yes or no."


class Judge(Protocol):
    def yes_probabilities(self, conversations: list[list[dict[str, str]]]) -> list[float]: ...


def judge_conversation(request: str, answer: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Request: {request}\nAnswer: {answer}\nQuestion: {question}"}]


def rubric_scores(judge: Judge, requests: list[str], answers: list[str]) -> list[float]:
    """Per answer: the mean P(yes) over the rubric items."""
    conversations = [judge_conversation(r, a, q) for r, a in zip(requests, answers, strict=True) for q in RUBRIC.values()]
    probabilities = judge.yes_probabilities(conversations)
    k = len(RUBRIC)
    return [sum(probabilities[i * k:(i + 1) * k]) / k for i in range(len(answers))]


def corrupt(call: ToolCall | None, request: str, rng: random.Random) -> str:
    """A plausible wrong answer to grade as a negative control."""
    if call is None:
        return ToolCall("add_task", {"title": request}).to_json()
    arguments = dict(call.arguments)
    if "task_id" in arguments:
        return ToolCall(call.name, {"task_id": int(arguments["task_id"]) + rng.randint(1, 9)}).to_json()
    if "title" in arguments:
        return ToolCall(call.name, {"title": arguments["title"], "due": "tomorrow", "priority": "high"}).to_json()
    return ToolCall("delete_task", {"task_id": rng.randint(1, 99)}).to_json()


def balanced_agreement(scores: list[float], labels: list[bool]) -> float:
    """Mean of the judge's hit rate on correct answers and on wrong ones (0.5 = coin flip),
    so a judge that says yes to everything does not look trustworthy on an accurate model."""
    said_yes = [s >= 0.5 for s in scores]
    positives = [y for y, label in zip(said_yes, labels, strict=True) if label]
    negatives = [not y for y, label in zip(said_yes, labels, strict=True) if not label]
    rates = [sum(group) / len(group) for group in (positives, negatives) if group]
    return sum(rates) / len(rates) if rates else 0.0


class LocalJudge:
    """A causal LM read as a yes/no classifier: P(yes) = p(yes-tokens) / p(yes- or no-tokens)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.yes_ids = self._token_ids(["yes", "Yes", " yes", " Yes"])
        self.no_ids = self._token_ids(["no", "No", " no", " No"])

    def _token_ids(self, words: list[str]) -> list[int]:
        ids = {self.tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
        return sorted(ids)

    def yes_probabilities(self, conversations: list[list[dict[str, str]]]) -> list[float]:
        import torch

        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
        probabilities = [0.0] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            indices = order[start:start + self.batch_size]
            batch = self.tokenizer([prompts[i] for i in indices], return_tensors="pt", padding=True,
                                   add_special_tokens=False)
            with torch.inference_mode():
                logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :].float()  # last position only
            probs = torch.softmax(logits, dim=-1)
            yes, no = probs[:, self.yes_ids].sum(dim=-1), probs[:, self.no_ids].sum(dim=-1)
            for i, p in zip(indices, (yes / (yes + no).clamp_min(1e-12)).tolist(), strict=True):
                probabilities[i] = p
        return probabilities


class EndpointJudge:
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama at /v1)."""

    def __init__(self, endpoint: str, model: str, api_key_env: str):
        self.endpoint, self.model = endpoint.rstrip("/"), model
        self.api_key = os.environ.get(api_key_env, "")

    def yes_probabilities(self, conversations: list[list[dict[str, str]]]) -> list[float]:
        return [1.0 if self._ask(c).strip().lower().startswith("yes") else 0.0 for c in conversations]

    def _ask(self, messages: list[dict[str, str]]) -> str:
        return chat_completion(self.endpoint, self.model, messages, max_tokens=3, api_key=self.api_key)
