"""What LMKG chooses after training, on the validation cases only, separately for warm and cold users:

- gate: how far a user's vector leans on the target-only view of their history (0: the mixed history, 1: the
  target items alone). A warm user's source history helps some scenarios and drowns others; the validation
  cases say which, so the full model does not lose to its target-only ablation (negative transfer).
- cf: the collaborative channel's weight, in network standard deviations at the channel's best item.
- new: an offset for items nobody had in training, in the same units: how much the catalogue's never-bought
  items deserve beyond what their content path scores;
- text: the frozen-text channel's weight (network standard deviations per unit of its cosine score);
- text_view: whether that channel reads a warm user's whole history (0) or their target items alone (1): text
  similarity to source items can pull a warm user's list away from what their target history says;
- (in fit only) the text channel's entity weight: content chooses it for content alone, but beside the network and
  the co-occurrence channel the attribute match can be redundant or harmful (on the shipped data, warm validation
  NDCG@10 0.0872 -> 0.0879 and 0.0706 -> 0.0720 without it), so the fused model chooses it again. It is a setting of
  the channel (kept in its state), not a column: a run derived with the co-occurrence channel switched keeps it.
Coordinate search over small grids (each coordinate's candidates share one pass over the cases).
"""
from __future__ import annotations

import numpy as np
import torch

from ...evaluate import block_rows, mask_known, ndcg_sum
from ...scenario import CASE_SEGMENTS

GATES = (0.0, 0.25, 0.5, 0.75, 1.0)
CF_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
NEW_OFFSETS = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
TEXT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TEXT_VIEWS = (0.0, 1.0)
# The cases each segment is calibrated on: all of them up to MAX_CASES (the shipped data's 7,700 warm), a seeded
# subset of larger sets, smaller still where their dense text scores (one or two (cases, target items) blocks, held
# through the whole search) would pass HELD_BYTES, but never below MIN_CASES. The shipped data holds 1.2 GB; at 16x
# its size (316k target items) 1,024 cases hold 2.6 GB, the largest share of a training's peak memory.
MAX_CASES, MIN_CASES, HELD_BYTES = 16384, 1024, 2 * 2**30
COLUMNS = ("gate", "cf", "new", "text", "text_view")  # a calibration tensor is (len(CASE_SEGMENTS), len(COLUMNS))
SWITCHES = ("gate", "text_view")  # columns that change the scores a candidate is added to, not a channel's weight


def neutral() -> torch.Tensor:
    """The calibration that leaves the network as trained (used while it trains): every column 0."""
    return torch.zeros(len(CASE_SEGMENTS), len(COLUMNS))


def completed(table: torch.Tensor) -> torch.Tensor:
    """A stored calibration with the columns added since it was made at 0 (what the run was calibrated as)."""
    return torch.cat([table, neutral()[:, table.shape[1]:]], 1)


def calibrate(model, scenario, use_cf: bool, entities: bool = False) -> torch.Tensor:
    """(2, 5) gate, cf weight, new-item offset, text weight and text view for warm and cold users, by NDCG@10 on
    validation; with `entities`, also each segment's entity weight of the text channel (written into it)."""
    chosen = neutral()
    use_text = model.semantic_ is not None
    for s, segment in enumerate(CASE_SEGMENTS):
        cases = scenario.valid.subset(np.flatnonzero(scenario.valid.segment == segment))
        if len(cases) == 0:
            continue
        text_views = use_text and segment == "warm"
        held = 4 * model.n_target_ * (use_text + text_views)  # bytes of dense scores held per case
        cases = cases.at_most(int(np.clip(HELD_BYTES // max(held, 1), MIN_CASES, MAX_CASES)), scenario.spec["seed"])
        views = _views(model, scenario, cases, use_cf, text_views)
        setting = dict.fromkeys(COLUMNS, 0.0)
        channels = ([("cf", CF_WEIGHTS)] if use_cf else []) + ([("text", TEXT_WEIGHTS)] if use_text else [])
        view = [("text_view", TEXT_VIEWS)] if text_views else []  # a cold user has no target item
        weights = model.semantic_.entity_weights() if use_text and entities else ()
        stages = [("gate", GATES), *channels, *view, *([("entity", weights)] if len(weights) > 1 else []),
                  ("new", NEW_OFFSETS), *channels, *view]
        for name, grid in stages:
            if name == "entity":
                views = None  # the channel's dense scores are held for one entity weight at a time
                views = _choose_entity_weight(model, scenario, cases, use_cf, text_views, setting, segment, grid)
                continue
            totals = _ndcg_totals(model, cases, views, setting, name, grid)
            setting[name] = _best(grid, totals)
        chosen[s] = torch.tensor([setting[c] for c in COLUMNS])
    return chosen


def _best(grid, totals) -> float:
    """The candidate with the highest total; among equals (e.g. no validation case involves a new item) the one
    nearest 0, which leaves the model as trained."""
    tied = [v for v, t in zip(grid, totals) if t >= totals.max() - 1e-9]
    return min(tied, key=abs)


def _choose_entity_weight(model, scenario, cases, use_cf, text_views, setting, segment, grid) -> list[tuple]:
    """Set the text channel's entity weight for the segment to the candidate with the best validation NDCG@10 of
    the current setting (ties: nearest 0) and return the views with it. Each candidate recomputes the views: the
    channel's scores are held for one weight at a time."""
    chosen = model.semantic_.chosen_[segment]
    totals = np.zeros(len(grid))
    for j, weight in enumerate(grid):
        chosen["entity_weight"] = weight
        views = _views(model, scenario, cases, use_cf, text_views)
        totals[j] = _ndcg_totals(model, cases, views, setting, "gate", (setting["gate"],))[0]
        del views  # one candidate's dense scores at a time
    chosen["entity_weight"] = _best(grid, totals)
    return _views(model, scenario, cases, use_cf, text_views)


def _views(model, scenario, cases, use_cf: bool, text_views: bool) -> list[tuple]:
    """Per chunk of cases: the rows, the users' vectors in both views and the channels' scores (the text channel's
    from the whole history and, with text_views, from the target items alone), computed once."""
    out = []
    with torch.no_grad():
        step = block_rows(model.n_target_)
        for lo in range(0, len(cases), step):
            rows = np.arange(lo, min(lo + step, len(cases)))
            history = model.visible(scenario.batch(cases, rows).history.to(model.device))
            target_only = torch.ones(len(rows), dtype=torch.bool)
            texts = (model.semantic_rows(history), model.semantic_rows(history, target_only) if text_views else None)
            out.append((rows, *model.views(history), model.cf_rows(history) if use_cf else None, texts))
    return out


def _ndcg_totals(model, cases, views, setting, name, grid) -> np.ndarray:
    """Total validation NDCG@10 of each value of column `name` (the other columns as in `setting`). A switch (the
    gate, the text view) changes what the candidates are added to; any other column adds one channel to scores that
    stay the same, so those are computed (and masked) once per chunk and each candidate only adds its channel."""
    totals = np.zeros(len(grid))
    # reused by every chunk and trial: a fresh (step, n_target) tensor each time costs more in page faults than
    # the arithmetic
    step = block_rows(model.n_target_)
    network, trial = torch.empty(step, model.n_target_), torch.empty(step, model.n_target_)
    with torch.no_grad():
        for rows, mixed, target, cf, texts in views:
            column = {c: torch.full((len(rows),), float(setting[c])) for c in COLUMNS}
            semantic = texts[int(setting["text_view"])]
            if name in SWITCHES:
                for j, value in enumerate(grid):
                    gate = torch.full((len(rows),), float(value)) if name == "gate" else column["gate"]
                    semantic = texts[int(value)] if name == "text_view" else semantic
                    scores, std = model.network_scores(mixed, target, gate, out=network[: len(rows)])
                    scores = model.add_channels(scores, std, cf, semantic, column["cf"], column["new"], column["text"])
                    totals[j] += ndcg_sum(mask_known(scores, cases, rows), cases, rows)
                continue
            scores, std = model.network_scores(mixed, target, column["gate"], out=network[: len(rows)])
            zero = torch.zeros(len(rows))
            column[name] = zero
            base = mask_known(model.add_channels(scores, std, cf, semantic, column["cf"], column["new"],
                                                 column["text"]), cases, rows)
            for j, value in enumerate(grid):
                only = {c: torch.full((len(rows),), float(value)) if c == name else zero for c in ("cf", "new", "text")}
                scores = model.add_channels(trial[: len(rows)].copy_(base), std, cf, semantic, only["cf"], only["new"],
                                            only["text"])
                totals[j] += ndcg_sum(scores, cases, rows)
    return totals
