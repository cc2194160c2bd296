"""Synthetic data: Self-Instruct-style expansion of the valid source examples up to a target count.

Two generators, one contract: `template` (the embedded Task API domain's deterministic generator)
and `llm` (a model behind any OpenAI-compatible endpoint, shown a few source examples and asked
for a new one, its answer constrained to the tool schema where the server can). Every generated row
passes the same format and quality validation as source rows and must be new (not an exact repeat
of what is there); the rest is kept, with the reason, in `rejected`. Accepted rows carry
`synthetic: <generator>` and an origin naming the generator and attempt, so the report can count
them and nothing generated passes for source data.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmops_assets.core.chat import tool_call_message, tool_calls_of
from llmops_assets.core.examples import format_problems
from llmops_assets.core.rows import example_id, quarantine_entry
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.config import QualityFilterSettings, SyntheticSettings
from llmops_assets.data.curate import normalized_text
from llmops_assets.data.validate import quality_problems

Ask = Callable[[list[dict[str, str]], dict[str, Any] | None, int], str]  # (messages, response_format, seed) -> text

INSTRUCTION = (
    "You write training data for an assistant that answers a user's request with one tool call. "
    "Here are examples, one JSON object each:\n{examples}\n"
    "Write one new example in the same JSON form: a different, realistic request a user might make "
    "(new wording, new details), and the tool call that answers it. Reply with the JSON object only."
)


@dataclass
class Expansion:
    records: list[dict[str, Any]] = field(default_factory=list)   # accepted, tagged synthetic records
    rejected: list[dict[str, Any]] = field(default_factory=list)  # quarantine entries: origin, reason, raw
    attempts: int = 0

    def counts(self) -> dict[str, int]:
        return {"synthetic_accepted": len(self.records), "synthetic_rejected": len(self.rejected),
                "synthetic_attempts": self.attempts}


def expand(records: list[dict[str, Any]], schema: ToolSchema, settings: SyntheticSettings,
           quality: QualityFilterSettings, ask: Ask | None = None,
           progress: Callable[[str], None] = lambda _: None) -> Expansion:
    """New examples until the valid source rows plus the accepted synthetic ones reach
    `settings.target_count`, or `max_attempts_per_example` requests per wanted row are spent."""
    seeds = [r for r in records if not format_problems(r["messages"], schema)]
    wanted = settings.target_count - len(seeds)
    result = Expansion()
    if wanted <= 0:
        return result
    if not seeds:
        raise ValueError("synthetic expansion needs at least one valid source example to start from")
    candidates = (_template_candidates(settings.seed, schema) if settings.generator == "template"
                  else _llm_candidates(seeds, schema, settings, ask or endpoint_asker(settings)))
    seen = {normalized_text(r["messages"]) for r in records}
    while len(result.records) < wanted and result.attempts < wanted * settings.max_attempts_per_example:
        messages_or_reason, raw = next(candidates)
        result.attempts += 1
        origin = f"synthetic:{settings.generator}:{result.attempts}"
        problems = [messages_or_reason] if isinstance(messages_or_reason, str) else format_problems(messages_or_reason, schema)
        text = "" if problems else normalized_text(messages_or_reason)
        if not problems:
            problems = quality_problems(messages_or_reason, quality, text) or (
                ["repeats an existing example"] if text in seen else [])
        if problems:
            result.rejected.append(quarantine_entry(origin, "; ".join(problems), raw))
            continue
        seen.add(text)
        result.records.append({"id": example_id(messages_or_reason), "origin": origin,
                               "messages": messages_or_reason, "synthetic": settings.generator})
        if len(result.records) % 50 == 0 or len(result.records) == wanted:
            progress(f"synthetic: {len(result.records)}/{wanted} accepted after {result.attempts} attempts")
    return result


def _template_candidates(seed: int, schema: ToolSchema) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    from llmops_assets.data.synth import TASK_API_TOOLS, generate_task_api_examples

    if not set(TASK_API_TOOLS) <= set(schema.names):
        raise ValueError(f"the template generator writes the embedded Task API domain ({', '.join(TASK_API_TOOLS)}); "
                         f"this domain's tools are {', '.join(schema.names)}: use stages.data.synthetic.generator: llm")
    batch = 0
    while True:  # fresh batches from a derived seed; repeats are rejected by the caller
        for row in generate_task_api_examples(count=200, seed=seed * 1000 + batch, duplicate_ratio=0.0):
            yield row["messages"], row
        batch += 1


def _llm_candidates(seeds: list[dict[str, Any]], schema: ToolSchema, settings: SyntheticSettings,
                    ask: Ask) -> Iterator[tuple[list[dict[str, Any]] | str, Any]]:
    rng = random.Random(settings.seed)
    shots = [s for s in (_as_shot(r["messages"]) for r in seeds) if s is not None]
    if not shots:
        raise ValueError("the llm generator needs source examples that answer with one tool call to show it")
    response_format = _response_format(settings.response_format, example_schema(schema))
    while True:
        examples = "\n".join(json.dumps(s, ensure_ascii=False) for s in rng.sample(shots, min(settings.few_shot, len(shots))))
        prompt = [{"role": "user", "content": INSTRUCTION.format(examples=examples)}]
        text = ask(prompt, response_format, rng.randrange(2**31))
        yield parse_generated(text), text


def _as_shot(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A source example as the generator's JSON form: {request, tool, arguments}."""
    users = [m for m in messages if m.get("role") == "user"]
    calls = tool_calls_of(messages[-1])
    if len(users) != 1 or len(calls) != 1:
        return None
    return {"request": users[0]["content"], "tool": calls[0].name, "arguments": calls[0].arguments}


def parse_generated(text: str) -> list[dict[str, Any]] | str:
    """Chat messages from the generator's JSON answer, or why there are none."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return "no JSON object in the answer"
    try:
        shot = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg}"
    if not isinstance(shot, dict) or not isinstance(shot.get("request"), str) or not isinstance(shot.get("tool"), str):
        return "expected an object with 'request' (text), 'tool' (a name) and 'arguments'"
    # Arguments that are no JSON object stay what they are, for validation to reject them.
    return [{"role": "user", "content": shot["request"]}, tool_call_message(shot["tool"], json.dumps(shot.get("arguments", {})))]


def example_schema(schema: ToolSchema) -> dict[str, Any]:
    """JSON Schema of one generated example: a request and a call of one of the tools, with that
    tool's parameters, so a constrained decoder can only write calls that fit."""
    return {"anyOf": [{
        "type": "object",
        "properties": {"request": {"type": "string", "minLength": 3}, "tool": {"const": f["function"]["name"]},
                       "arguments": f["function"].get("parameters", {"type": "object"})},
        "required": ["request", "tool", "arguments"],
    } for f in schema.functions]}


def _response_format(style: str, json_schema: dict[str, Any]) -> dict[str, Any] | None:
    if style == "json_object":  # llama.cpp's server (llama-cpp-python) turns the schema into a grammar
        return {"type": "json_object", "schema": json_schema}
    if style == "json_schema":  # OpenAI, vLLM, Ollama's /v1
        return {"type": "json_schema", "json_schema": {"name": "example", "schema": json_schema}}
    return None


def endpoint_asker(settings: SyntheticSettings, served: dict[str, Any] | None = None) -> Ask:
    """Requests to the configured endpoint; `served` is the deployment status for endpoint 'served'."""
    from llmops_assets.core.inference import chat_completion

    if settings.endpoint == "served":
        if not served:
            raise ValueError("stages.data.synthetic.endpoint is 'served' but no model is deployed yet; deploy one "
                             "first or set the endpoint to an OpenAI-compatible URL (Ollama: http://127.0.0.1:11434/v1)")
        endpoint, model = served["endpoint"], settings.model or served["model_name"]
    else:
        if not settings.model:
            raise ValueError(f"stages.data.synthetic.model: name the model {settings.endpoint} should use")
        endpoint, model = settings.endpoint, settings.model
    api_key = os.environ.get(settings.api_key_env, "")

    def ask(messages: list[dict[str, str]], response_format: dict[str, Any] | None, seed: int) -> str:
        return chat_completion(endpoint, model, messages, max_tokens=160, temperature=settings.temperature,
                               api_key=api_key, response_format=response_format, seed=seed)

    return ask
