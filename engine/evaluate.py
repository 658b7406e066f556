"""Score every case of a split in batches, rank, and collect per-case and per-segment metrics.

Default is full ranking over all target items with the user's known target items masked; `sampled=N` ranks the
relevant items against N seeded random negatives instead (as some papers do), for comparison only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import metrics
from .scenario import Cases, Scenario

SEGMENTS = ("all", "warm", "cold")
TOP = max(metrics.KS)


@dataclass
class Evaluation:
    per_case: pd.DataFrame   # user_id, segment, one column per ranking metric, ild@10, novelty@10
    top: np.ndarray          # (cases, TOP) target item indices, best first
    summary: dict            # {segment: {metric: value}}


def rank(model, scenario: Scenario, cases: Cases, batch_size: int = 1024, sampled: int | None = None,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-TOP target items per case and whether each is relevant."""
    rng = np.random.default_rng(seed)
    tops, hits = [], []
    with torch.no_grad():
        model.prepare()
        for lo in range(0, len(cases), batch_size):
            rows = np.arange(lo, min(lo + batch_size, len(cases)))
            scores = mask_known(model.score(scenario.batch(cases, rows).to(model.device)), cases, rows)
            if sampled:
                scores = _keep_sampled(scores, cases.relevant.padded(rows), sampled, rng)
            top, hit = top_and_hits(scores, cases, rows)
            tops.append(top)
            hits.append(hit)
    return np.concatenate(tops), np.concatenate(hits)


def mask_known(scores: torch.Tensor, cases: Cases, rows: np.ndarray) -> torch.Tensor:
    """The scores (on the CPU, float) with each case's known target items at -inf: they are never recommended."""
    scores = scores.float().cpu().contiguous()
    exclude = cases.exclude.padded(rows)
    r, c = np.nonzero(exclude >= 0)
    scores[r, exclude[r, c]] = -torch.inf
    return scores


def top_and_hits(scores: torch.Tensor, cases: Cases, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-TOP target items of each row and whether each is relevant for the row's case."""
    top = scores.topk(TOP, dim=1).indices.numpy()
    return top, (top[:, :, None] == cases.relevant.padded(rows)[:, None, :]).any(2)


def _keep_sampled(scores: torch.Tensor, relevant: np.ndarray, n: int, rng) -> torch.Tensor:
    """Leave only the relevant items and n random unmasked negatives per row in the running."""
    kept = torch.full_like(scores, -torch.inf)
    for i in range(len(scores)):
        rel = relevant[i][relevant[i] >= 0]
        pool = np.flatnonzero(torch.isfinite(scores[i]).numpy())
        pool = np.setdiff1d(pool, rel, assume_unique=True)
        cand = np.concatenate([rel, rng.choice(pool, size=min(n, len(pool)), replace=False)])
        kept[i, cand] = scores[i, cand]
    return kept


def evaluate(model, scenario: Scenario, split: str = "test", sampled: int | None = None,
             batch_size: int = 1024, features=None) -> Evaluation:
    cases = scenario.cases(split)
    top, _ = rank(model, scenario, cases, batch_size, sampled, seed=scenario.spec["seed"])
    return evaluate_top(scenario, cases, top, features)


def evaluate_top(scenario: Scenario, cases: Cases, top: np.ndarray, features=None) -> Evaluation:
    """Per-case and summary metrics of ranked lists (cases, >= TOP target item indices, best first), however made."""
    # (case, item) pairs as one integer each, so membership is one isin over all cases (cold users have many items).
    case = np.arange(len(cases))
    relevant = np.repeat(case, cases.relevant.lengths) * scenario.n_target + cases.relevant.values
    hits = np.isin(case[:, None] * scenario.n_target + top, relevant)
    per_case = pd.DataFrame(metrics.ranking_metrics(hits, cases.relevant.lengths))
    features = scenario.item_features() if features is None else features
    per_case["ild@10"] = metrics.intra_list_diversity(top[:, :10], features)
    per_case["novelty@10"] = metrics.novelty(top[:, :10], scenario.item_popularity(), scenario.n_users)
    per_case.insert(0, "segment", cases.segment)
    per_case.insert(0, "user_id", scenario.users[cases.user])
    return Evaluation(per_case, top, summarise(per_case, top, scenario.n_target))


def summarise(per_case: pd.DataFrame, top: np.ndarray, n_target: int) -> dict:
    summary = {}
    for segment in SEGMENTS:
        mask = np.ones(len(per_case), bool) if segment == "all" else (per_case["segment"] == segment).to_numpy()
        values = {"cases": int(mask.sum())}
        if mask.any():
            values.update(per_case.loc[mask].drop(columns=["user_id", "segment"]).mean().round(6).to_dict())
            for k in metrics.KS:
                values[f"coverage@{k}"] = round(metrics.coverage(top[mask, :k], n_target), 6)
        summary[segment] = values
    return summary


def validation_ndcg(model, scenario: Scenario, segment: str = "all", max_cases: int = 10_000) -> float:
    """NDCG@10 on (a fixed seeded subset of) the validation cases: the early-stopping signal."""
    cases = scenario.valid
    if segment != "all":
        cases = cases.subset(np.flatnonzero(cases.segment == segment))
    if len(cases) > max_cases:
        rows = np.sort(np.random.default_rng(scenario.spec["seed"]).choice(len(cases), max_cases, replace=False))
        cases = cases.subset(rows)
    _, hits = rank(model, scenario, cases)
    return float(metrics.ranking_metrics(hits, cases.relevant.lengths, ks=(10,))["ndcg@10"].mean())

