"""The data stage's settings (`stages.data`): sources, synthetic expansion, filters, split, gate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from llmops_assets.core.config import SEED_DIR, StrictModel


class SplitSettings(StrictModel):
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.05, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSettings:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError("split ratios train + validation + test must sum to 1")
        return self


class DataGate(StrictModel):
    min_examples: int = Field(200, ge=1)
    min_format_valid_ratio: float = Field(1.0, ge=0, le=1)
    max_duplicate_ratio: float = Field(0.05, ge=0, le=1)
    max_mean_tokens: float = Field(2048, gt=0)
    max_example_tokens: int = Field(4096, ge=1, description="Per example, checked by the Great Expectations suite.")
    leakage_similarity: float = Field(
        0.85, gt=0, le=1, description="Requests at least this similar (MinHash estimate of the Jaccard similarity of "
                                      "their word shingles) must not be in two splits: curation keeps them in one "
                                      "split and no_split_leakage fails on any such pair across splits.")


class NearDuplicateSettings(StrictModel):
    """MinHash LSH over word shingles of the normalized example; a match is a near duplicate when
    the estimated Jaccard similarity reaches `threshold`."""

    enabled: bool = True
    threshold: float = Field(0.85, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    shingle_words: int = Field(3, ge=1)


class QualityFilterSettings(StrictModel):
    """Rows that are well-formed but not worth training on; each filtered row is quarantined with why."""

    enabled: bool = True
    min_request_chars: int = Field(2, ge=0)
    max_chars: int = Field(20_000, ge=1, description="All contents of the example together.")
    max_repeated_word_share: float = Field(
        0.5, gt=0, le=1, description="The most frequent word's share of an example's words (from 8 words on).")
    allow_control_chars: bool = False


class SyntheticSettings(StrictModel):
    """Self-Instruct expansion of the valid source examples up to `target_count`. `template` is the
    embedded Task API domain's deterministic generator; `llm` asks a model behind an
    OpenAI-compatible endpoint for new examples in the style of a few source ones. Either way each
    row passes the same validation as source rows; rows that fail are kept apart with their reason."""

    enabled: bool = False
    generator: Literal["template", "llm"] = "template"
    target_count: int = Field(800, ge=1, description="Valid examples after expansion: source rows plus synthetic ones.")
    seed: int = 13
    endpoint: str = Field("served", description="'served': the deployed model's endpoint (deployment_status.json); "
                                                "or a base URL such as http://127.0.0.1:11434/v1 (Ollama), "
                                                "https://api.openai.com/v1")
    model: str | None = Field(None, description="The model name the endpoint knows; 'served' uses the deployed alias.")
    api_key_env: str = Field(
        "", description="Environment variable holding the endpoint's API key; empty: no key is sent. A key is "
                        "never sent over plain HTTP except to this machine.")
    response_format: Literal["json_object", "json_schema", "none"] = Field(
        "json_object", description="How the answer is constrained to the example schema: json_object (llama.cpp "
                                   "server), json_schema (OpenAI, vLLM, Ollama), none (parse the text).")
    few_shot: int = Field(4, ge=1, description="Source examples shown in each request.")
    temperature: float = Field(0.9, ge=0)
    max_attempts_per_example: int = Field(
        4, ge=1, description="Requests per wanted example before the generator gives up, reporting what it has.")


class FeedbackSettings(StrictModel):
    """Preference pairs from the gateway's feedback (`preference_pairs`), and their gates."""

    min_pairs: int = Field(80, ge=1, description="Pairs before DPO trains on feedback; fewer wait, unused. With "
                                                 "held_out_share, enough to hold out dpo.quality_gate.min_held_out_pairs.")
    max_pairs_per_client: int = Field(
        25, ge=1, description="Pairs one API key (or the anonymous clients together) may contribute: a flood from "
                              "one client is capped, the rest quarantined.")
    held_out_share: float = Field(0.2, gt=0, lt=1, description="The newest pairs, held out for DPO's evaluation "
                                                                "(a split by time: no pair is judged on its future).")
    max_longer_chosen_share: float = Field(
        0.9, gt=0, le=1, description="Warn when the chosen answer is the longer one in more pairs than this (a "
                                     "lower confidence bound): the model would learn length, not correctness.")
    corrections_as_examples: bool = Field(
        True, description="Corrected tool calls (capped and screened like the pairs) also become SFT rows in "
                          "raw_examples, curated and split like every other row.")


class DriftSettings(StrictModel):
    """`drift_report`: live prompts (the gateway's log) against the training prompts, on sentence
    embeddings, by a domain classifier: drift when its ROC AUC exceeds what shuffled labels reach."""

    min_live_requests: int = Field(50, ge=10, description="Fewer live prompts: no verdict yet.")
    max_live_requests: int = Field(2000, ge=10, description="The most recent client requests compared.")
    permutations: int = Field(30, ge=5, description="Label shuffles that give the no-drift AUC threshold "
                                                    "(its 95th percentile).")
    clusters: int = Field(8, ge=2, description="k-means clusters of live and training prompts: a cluster far more "
                                               "live than training is reported, with examples, for review.")
    review_per_cluster: int = Field(20, ge=0, description="Prompts of each flagged cluster put on the review queue.")
    every_new_requests: int = Field(200, ge=1, description="drift_sensor: a new drift report after this many new "
                                                           "client requests.")
    retrain_min_new_examples: int = Field(50, ge=1, description="retraining_sensor: with drift, retrain once this many "
                                                                "corrected calls wait outside the training data.")
    seed: int = 7


class DataSettings(StrictModel):
    sources: list[Path] = [SEED_DIR / "task_api_examples.jsonl"]
    workers: int = Field(0, ge=0, description="processes for ingest and curation of large sources; 0: one per core")
    synthetic: SyntheticSettings = SyntheticSettings()
    near_duplicates: NearDuplicateSettings = NearDuplicateSettings()
    quality_filters: QualityFilterSettings = QualityFilterSettings()
    split: SplitSettings = SplitSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    drift: DriftSettings = DriftSettings()
    quality_gate: DataGate = DataGate()
