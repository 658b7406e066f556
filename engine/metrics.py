"""Ranking and beyond-accuracy metrics, computed per test case so runs can be compared pairwise."""
from __future__ import annotations

import numpy as np
from scipy import sparse, stats

KS = (5, 10, 20)


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks=KS) -> dict[str, np.ndarray]:
    """Per-case metrics from the top of each ranking.

    hits: (cases, >= max(ks)) bool, hits[c, r] = the item at rank r+1 is relevant for case c.
    n_relevant: (cases,) how many relevant items case c has (>= 1).
    """
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    first = np.where(hits.any(1), hits.argmax(1), hits.shape[1])  # 0-based rank of first hit
    out = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        ideal = np.cumsum(discount[:k])[np.minimum(n_rel, k).astype(int) - 1]
        precision = n_hit / k
        recall = n_hit / n_rel
        out[f"hr@{k}"] = (n_hit > 0).astype(np.float64)
        out[f"ndcg@{k}"] = (h * discount[:k]).sum(1) / ideal
        out[f"mrr@{k}"] = np.where(first < k, 1.0 / (first + 1), 0.0)
        out[f"recall@{k}"] = recall
        out[f"precision@{k}"] = precision
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"f1@{k}"] = np.nan_to_num(2 * precision * recall / (precision + recall))
    return out


def coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return float(np.unique(top_items).size / n_items) if n_items else 0.0


def intra_list_diversity(top_items: np.ndarray, features: sparse.csr_matrix) -> np.ndarray:
    """Per list: mean pairwise (1 - Jaccard) of the items' binary attribute sets (categories, brand, ...)."""
    n, k = top_items.shape
    if k < 2:
        return np.zeros(n)
    i, j = np.triu_indices(k, 1)
    a, b = top_items[:, i].ravel(), top_items[:, j].ravel()
    f = sparse.csr_matrix(features, dtype=np.float32)
    sizes = np.asarray(f.sum(1)).ravel()
    inter = np.asarray(f[a].multiply(f[b]).sum(1)).ravel()
    union = sizes[a] + sizes[b] - inter
    jaccard = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)  # no attributes: count as alike
    return (1.0 - jaccard).reshape(n, -1).mean(1)


def novelty(top_items: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Per list: mean self-information -log2(p(i)) of its items, p = share of users who had i (smoothed)."""
    p = (popularity + 1.0) / (n_users + 1.0)
    return (-np.log2(p))[top_items].mean(1)


def gini(top_items: np.ndarray, n_items: int) -> float:
    """Gini coefficient of how often each catalogue item is recommended: 0 when every item appears equally often,
    towards 1 when the lists go to a few items (popularity bias)."""
    counts = np.sort(np.bincount(top_items.ravel(), minlength=n_items)).astype(float)
    if n_items < 2 or counts.sum() == 0:
        return 0.0
    rank = np.arange(1, n_items + 1)
    return float((2 * (rank * counts).sum() / (n_items * counts.sum())) - (n_items + 1) / n_items)


def share_of(top_items: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per list: the share of its items for which the boolean per-item array `chosen` holds."""
    return chosen[top_items].mean(1)


def paired_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Wilcoxon signed-rank test of two runs' per-case values on the same cases, with the share of cases each run
    does better on (the rest are ties)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    result = {"n": int(a.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_diff": float(diff.mean()),
              "a_better": float((diff > 0).mean()) if a.size else 0.0,
              "b_better": float((diff < 0).mean()) if a.size else 0.0}
    if not np.any(diff != 0):
        return {**result, "statistic": 0.0, "p_value": 1.0}
    test = stats.wilcoxon(a, b, zero_method="wilcox")
    return {**result, "statistic": float(test.statistic), "p_value": float(test.pvalue)}
