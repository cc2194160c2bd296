"""Overlap of text answers (refusals, clarifications) with their references: ROUGE-L F1
(Google's `rouge-score`, the reference ROUGE-1.5.5 port) and chrF (`sacrebleu`). Exact match
says whether the answer refuses when the reference does; these say how close its words are,
which a reviewer reads beside it."""

from __future__ import annotations

import statistics
from typing import Any


def text_overlap(references: list[str], answers: list[str]) -> dict[str, Any]:
    """Per pair and on average: ROUGE-L F1 in [0, 1], sentence chrF in [0, 100]; corpus chrF too."""
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import CHRF

    if len(references) != len(answers):
        raise ValueError(f"{len(references)} references but {len(answers)} answers")
    if not references:
        return {"n": 0, "rouge_l": None, "chrf": None, "corpus_chrf": None, "per_example": []}
    rouge, chrf = RougeScorer(["rougeL"], use_stemmer=True), CHRF()
    per_example = [{"rouge_l": rouge.score(reference, answer)["rougeL"].fmeasure,
                    "chrf": chrf.sentence_score(answer, [reference]).score}
                   for reference, answer in zip(references, answers, strict=True)]
    return {"n": len(references), "rouge_l": statistics.fmean(p["rouge_l"] for p in per_example),
            "chrf": statistics.fmean(p["chrf"] for p in per_example),
            "corpus_chrf": chrf.corpus_score(answers, [references]).score, "per_example": per_example}
