"""An explanation an analyst can read: where the item ranks, a sentence or two naming what drives it, where SHAP and
LIME disagree, and a counterfactual (the fewest history items whose removal drops the item out of the top K),
found with the model and verified by re-scoring.
"""
from __future__ import annotations

import numpy as np
import torch

from .scenario import Batch

TOP_K = 10           # the list a counterfactual pushes the item out of
NAMED = 3            # features named in a summary
NEGLIGIBLE = 0.01    # an attribution below this share of the largest one has no sign worth comparing


def rank_of(model, user: int, history: np.ndarray, exclude: np.ndarray, item: int) -> tuple[int, int]:
    """(rank, candidates): the item's place (1 = first) among the target items the user does not know, scored from
    `history` (global item indices, oldest first)."""
    padded = torch.as_tensor(history if len(history) else [-1], dtype=torch.long)[None]
    with torch.no_grad():
        scores = model.score(Batch(torch.tensor([user]), padded).to(model.device)).float().cpu()[0]
    scores[torch.as_tensor(exclude, dtype=torch.long)] = -torch.inf
    return int((scores > scores[item]).sum()) + 1, int(torch.isfinite(scores).sum())


def counterfactual(model, user: int, history: np.ndarray, exclude: np.ndarray, item: int, attribution: np.ndarray,
                   rank: int, k: int = TOP_K) -> dict | None:
    """The history positions to remove so that the item falls out of the top k: removed in order of attribution
    (largest first) until it does, then each one put back if the item stays out without its removal, pass after
    pass until none is (so no removed item is needless); the final set re-scored. None when the item is not in the
    top k, or stays there with every history item that pushes it up removed. `rank` is the item's rank with the
    whole history (rank_of)."""
    if rank > k:
        return None
    order = [int(p) for p in np.argsort(-attribution, kind="stable") if attribution[p] > 0]
    out = lambda removed: rank_of(model, user, np.delete(history, removed), exclude, item)[0] > k  # noqa: E731
    removed = []
    for position in order:
        removed.append(position)
        if out(removed):
            break
    else:
        return None
    settled = False
    while not settled:  # until a whole pass puts nothing back: a model's scores need not be monotone in its history
        settled = True
        for position in list(removed):
            fewer = [p for p in removed if p != position]
            if fewer and out(fewer):
                removed, settled = fewer, False
    rank, _ = rank_of(model, user, np.delete(history, removed), exclude, item)
    return {"k": k, "positions": sorted(removed), "rank_after": rank, "verified": rank > k}


def disagreements(shap_values: np.ndarray, lime_values: np.ndarray) -> np.ndarray:
    """Per feature: SHAP and LIME give it opposite signs, each above a negligible share of its method's largest."""
    def signs(values):
        scale = np.abs(values).max(initial=0.0)
        return np.where(np.abs(values) > NEGLIGIBLE * scale, np.sign(values), 0)
    a, b = signs(shap_values), signs(lime_values)
    return (a * b) < 0


def summary(title: str, target: str, rank: int, candidates: int, labels: list[str], kinds: list[str],
            attribution: np.ndarray, method: str, counter: dict | None) -> str:
    """One or two sentences: where the item ranks, the features that push it up most (and the strongest one
    against it), by `method`'s attributions, and what removing would drop it from the top K."""
    share = 100 * rank / max(candidates, 1)  # the item and those above it: rank 1 of 56 is in the top 1.8 %
    text = f"'{title}' ranks {rank:,} of {candidates:,} {target} items (top {share:.2g} %)"
    up = [i for i in np.argsort(-attribution, kind="stable")[:NAMED] if attribution[i] > 0]
    if up:
        text += f"; {method.upper()} credits mostly " + _listed([_named(labels[i], kinds[i]) for i in up])
    against = int(np.argmin(attribution)) if len(attribution) else None
    if against is not None and attribution[against] < 0:
        text += f", while {_named(labels[against], kinds[against])} counts against it"
    text += "."
    if counter:
        removed = [labels[p] for p in counter["positions"]]
        named = removed if len(removed) <= NAMED else removed[:NAMED] + [f"{len(removed) - NAMED} more history items"]
        text += (f" Without {_listed(named)} in the history it would drop to rank {counter['rank_after']:,}, out "
                 f"of the top {counter['k']}.")
    return text


def _named(label: str, kind: str) -> str:
    return f"the history item {label}" if kind == "history" else f"the item's {label}"


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
