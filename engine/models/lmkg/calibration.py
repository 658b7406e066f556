"""What LMKG chooses after training, on the validation cases only, separately for warm and cold users:

- gate: how far a user's vector leans on the target-only view of their history (0: the mixed history, 1: the
  target items alone). A warm user's source history helps some scenarios and drowns others; the validation
  cases say which, so the full model does not lose to its target-only ablation (negative transfer).
- cf: the collaborative channel's weight, in network standard deviations at the channel's best item.
- new: an offset for items nobody had in training, in the same units: how much the catalogue's never-bought
  items deserve beyond what their content path scores;
- text: the frozen-text channel's weight (network standard deviations per unit of its cosine score).
Coordinate search over small grids (each coordinate's candidates share one pass over the cases).
"""
from __future__ import annotations

import numpy as np
import torch

from ... import metrics
from ...evaluate import mask_known, top_and_hits

GATES = (0.0, 0.25, 0.5, 0.75, 1.0)
CF_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
NEW_OFFSETS = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
SEGMENTS = ("warm", "cold")
TEXT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
COLUMNS = ("gate", "cf", "new", "text")  # a calibration tensor is (len(SEGMENTS), len(COLUMNS))
CHUNK = 1024


def neutral() -> torch.Tensor:
    """The calibration that leaves the network as trained (used while it trains): every column 0."""
    return torch.zeros(len(SEGMENTS), len(COLUMNS))


def calibrate(model, scenario, use_cf: bool) -> torch.Tensor:
    """(2, 4) gate, cf weight, new-item offset and text weight for warm and cold users, by NDCG@10 on
    validation."""
    chosen = neutral()
    use_text = model.semantic_ is not None
    for s, segment in enumerate(SEGMENTS):
        cases = scenario.valid.subset(np.flatnonzero(scenario.valid.segment == segment))
        if len(cases) == 0:
            continue
        views = _views(model, scenario, cases)
        setting = dict.fromkeys(COLUMNS, 0.0)
        channels = ([("cf", CF_WEIGHTS)] if use_cf else []) + ([("text", TEXT_WEIGHTS)] if use_text else [])
        stages = [("gate", GATES), *channels, ("new", NEW_OFFSETS), *channels]
        for name, grid in stages:
            totals = _ndcg_totals(model, scenario, cases, views, setting, name, grid, use_cf)
            setting[name] = _best(grid, totals)
        chosen[s] = torch.tensor([setting[c] for c in COLUMNS])
    return chosen


def _best(grid, totals) -> float:
    """The candidate with the highest total; among equals (e.g. no validation case involves a new item) the one
    nearest 0, which leaves the model as trained."""
    tied = [v for v, t in zip(grid, totals) if t >= totals.max() - 1e-9]
    return min(tied, key=abs)


def _views(model, scenario, cases) -> list[tuple]:
    """Per chunk of cases: the (visible) histories and their users' vectors in both views, computed once."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(cases), CHUNK):
            rows = np.arange(lo, min(lo + CHUNK, len(cases)))
            history = model.visible(scenario.batch(cases, rows).history.to(model.device))
            out.append((rows, history, *model.views(history), model.semantic_rows(history)))
    return out


def _ndcg_totals(model, scenario, cases, views, setting, name, grid, use_cf) -> np.ndarray:
    totals = np.zeros(len(grid))
    with torch.no_grad():
        for rows, history, mixed, target, semantic in views:
            cf = model.cf_rows(history) if use_cf else None
            for j, value in enumerate(grid):
                trial = {**setting, name: value}
                per_row = [torch.full((len(rows),), float(trial[c])) for c in COLUMNS]
                scores = model.combine(mixed, target, cf, semantic, *per_row)
                _, hits = top_and_hits(mask_known(scores, cases, rows), cases, rows)
                totals[j] += metrics.ranking_metrics(hits, cases.relevant.lengths[rows], ks=(10,))["ndcg@10"].sum()
    return totals
