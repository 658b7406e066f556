"""Score every case of a split in batches, rank, and collect per-case and per-segment metrics.

Default is full ranking over all target items with the user's known target items masked; `sampled=N` ranks the
relevant items against N seeded random negatives instead (as some papers do), for comparison only.

Segments: `all`, `warm` and `cold` users; item buckets of the warm cases by their held-out item's number of
target-domain training interactions (`new`, `tail`, `torso`, `head`, and `new+tail`, their union); user-activity
buckets by the number of target-domain items in the case's history (`users 0` = the cold users, `users 1-2`, ...,
`users 11+`). Both bucket boundaries are settings of the evaluation (ITEM_BUCKETS, ACTIVITY_BUCKETS by default).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import distributed, metrics
from .errors import CrossLensError
from .scenario import CASE_SEGMENTS, MIN_WARM_TARGET, Cases, Scenario

SEGMENTS = ("all", *CASE_SEGMENTS)
TOP = max(metrics.KS)
BLOCK_BYTES = 256 * 2**20  # the (cases, target items) float scores one batch may hold (block_rows)
# Bucket boundaries: each is the lowest value of the next bucket. Items: the held-out item's target-domain training
# interactions, [0,1) new, [1,5) tail, [5,20) torso, [20,inf) head. Users: target items in the case's history,
# [0,1) (the cold users), [1,3), [3,6), [6,11), [11,inf).
ITEM_BUCKETS = (1, 5, 20)
ACTIVITY_BUCKETS = (1, 3, 6, 11)
ITEM_BUCKET_NAMES = ("new", "tail", "torso", "head")
RARE_ITEMS = ("new", "tail")
RARE = "+".join(RARE_ITEMS)  # a union segment: where benchmarks test significance on rarely seen items
LONG_TAIL = "long_tail"  # per list: the share of its items from the new and tail buckets
SET_METRICS = ("coverage", "gini")  # measured on a segment's set of lists, not per case
USERS = "users "  # the prefix of the user-activity segments' names
# Per-case columns that describe the case rather than measure it.
CASE_COLUMNS = ("user_id", "segment", "item_bucket", "target_history")


@dataclass
class Evaluation:
    per_case: pd.DataFrame   # user_id, segment, item_bucket, target_history, one column per ranking metric, ild@10,
                             # novelty@10
    top: np.ndarray          # (cases, TOP) target item indices, best first
    summary: dict            # {segment: {metric: value}}


def scenario_counts(scenario: Scenario) -> dict:
    """What a scenario offers before anything is trained: its target items, the users it shares between the
    target and the sources, and its validation and test cases (warm and cold)."""
    log = pd.concat([scenario.train, scenario.held_out])
    in_target = log["domain"] == 0
    shared = np.intersect1d(log.loc[in_target, "user"].unique(), log.loc[~in_target, "user"].unique())
    return {"target_items": scenario.n_target, "shared_users": len(shared), "validation_cases": len(scenario.valid),
            **{f"{segment}_test_users": int((scenario.test.segment == segment).sum()) for segment in CASE_SEGMENTS}}


def check_scenario(scenario: Scenario) -> None:
    """Refuse, before anything is trained, a scenario that cannot be evaluated or learns nothing across domains:
    fewer target items than the longest list the metrics rank (TOP), no user shared by the target and a source,
    or no validation or no test case."""
    target, counts = scenario.target, scenario_counts(scenario)
    if scenario.n_target < TOP:
        raise CrossLensError(f"target domain '{target}' has {scenario.n_target} items; the metrics rank lists of up "
                             f"to {TOP}, so a target needs at least {TOP} items. Choose a larger target domain.")
    if counts["shared_users"] == 0:
        raise CrossLensError(f"'{target}' and {', '.join(map(repr, scenario.spec['source']))} share no user (users "
                             f"are linked across domains by equal user_id), so nothing can be learned across them. "
                             f"Choose domains that share users; the Datasets page shows how many each pair shares.")
    for split, cases in (("validation", scenario.valid), ("test", scenario.test)):
        if len(cases) == 0:
            raise CrossLensError(
                f"the scenario {', '.join(scenario.spec['source'])} -> {target} has no {split} case: a warm case "
                f"needs a user with at least {MIN_WARM_TARGET} interactions in '{target}', a cold case a user "
                f"present in a source domain and in '{target}' (with a cold fraction above 0). Choose domains that "
                f"share users, or a target whose users interact more often.")


def block_rows(n_items: int) -> int:
    """How many cases to score at once: a (cases, n_items) float block of at most BLOCK_BYTES, between 64 and 1024
    rows (1024 up to 65,536 items; at 600k items a block of 1024 rows would be 2.5 GB, and a model holds several)."""
    return int(np.clip(BLOCK_BYTES // (4 * max(n_items, 1)), 64, 1024))


def rank(model, scenario: Scenario, cases: Cases, batch_size: int | None = None, sampled: int | None = None,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-TOP target items per case and whether each is relevant (batch_size cases at a time, default
    block_rows)."""
    rng = np.random.default_rng(seed)
    batch_size = batch_size or block_rows(scenario.n_target)
    tops, hits = [], []
    with torch.no_grad():
        model.prepare()
        block = torch.empty(min(batch_size, len(cases)), scenario.n_target, device=model.device)  # reused (score)
        for lo in range(0, len(cases), batch_size):
            rows = np.arange(lo, min(lo + batch_size, len(cases)))
            batch = scenario.batch(cases, rows).to(model.device)
            scores = mask_known(model.score(batch, out=block[: len(rows)]), cases, rows)
            if sampled:
                scores = _keep_sampled(scores, cases.relevant.padded(rows), sampled, rng)
            top, hit = top_and_hits(scores, cases, rows)
            tops.append(top)
            hits.append(hit)
    return np.concatenate(tops), np.concatenate(hits)


def rank_shared(model, scenario: Scenario, cases: Cases, batch_size: int | None = None, sampled: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """rank(), shared out under torchrun (engine.distributed): each process ranks one contiguous block of whole
    batches and every process gets every case's lists, in case order, so every process returns exactly what one
    process computes (whole batches, because a model pads a batch's histories to its longest). Every process of the
    group must call it. Sampled ranking is not shared out: its negatives come from one random stream through all
    the cases in order, so each process ranks every case."""
    me, world = distributed.rank_world()
    batch_size = batch_size or block_rows(scenario.n_target)
    if world == 1 or sampled:
        return rank(model, scenario, cases, batch_size, sampled, seed)
    batches = distributed.block(-(-len(cases) // batch_size), me, world)
    rows = np.arange(batches.start * batch_size, min(batches.stop * batch_size, len(cases)))
    if len(rows):
        top, hits = rank(model, scenario, cases.subset(rows), batch_size)
    else:  # fewer batches than processes
        top, hits = np.zeros((0, TOP), np.int64), np.zeros((0, TOP), bool)
    parts = distributed.all_gather((top, hits))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def mask_known(scores: torch.Tensor, cases: Cases, rows: np.ndarray) -> torch.Tensor:
    """The scores (on the CPU, float) with each case's known target items at -inf: they are never recommended."""
    scores = scores.float().cpu().contiguous()
    exclude = cases.exclude.padded(rows)
    r, c = np.nonzero(exclude >= 0)
    scores[r, exclude[r, c]] = -torch.inf
    return scores


def top_and_hits(scores: torch.Tensor, cases: Cases, rows: np.ndarray, k: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """Top-k target items of each row and whether each is relevant for the row's case."""
    top = scores.topk(k, dim=1).indices.numpy()
    return top, (top[:, :, None] == cases.relevant.padded(rows)[:, None, :]).any(2)


def ndcg_sum(scores: torch.Tensor, cases: Cases, rows: np.ndarray, k: int = 10) -> float:
    """The rows' total NDCG@k from their (masked) scores, ranking only the top k: what models choose their
    settings by on validation cases."""
    _, hits = top_and_hits(scores, cases, rows, k)
    return float(metrics.ranking_metrics(hits, cases.relevant.lengths[rows], ks=(k,))[f"ndcg@{k}"].sum())


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
             batch_size: int | None = None, features=None, item_buckets=ITEM_BUCKETS,
             activity_buckets=ACTIVITY_BUCKETS) -> Evaluation:
    """The metrics of the model's lists for the split's cases. Under torchrun every process ranks its share of the
    cases and returns the whole Evaluation, the one a single process computes (rank_shared)."""
    check_buckets(item_buckets, activity_buckets)  # before the ranking, which is the slow part
    cases = scenario.cases(split)
    top, _ = rank_shared(model, scenario, cases, batch_size, sampled, seed=scenario.spec["seed"])
    return evaluate_top(scenario, cases, top, features, item_buckets, activity_buckets)


def evaluate_top(scenario: Scenario, cases: Cases, top: np.ndarray, features=None, item_buckets=ITEM_BUCKETS,
                 activity_buckets=ACTIVITY_BUCKETS) -> Evaluation:
    """Per-case and summary metrics of ranked lists (cases, >= TOP target item indices, best first), however made."""
    # (case, item) pairs as one integer each, so membership is one isin over all cases (cold users have many items).
    case = np.arange(len(cases))
    relevant = np.repeat(case, cases.relevant.lengths) * scenario.n_target + cases.relevant.values
    hits = np.isin(case[:, None] * scenario.n_target + top, relevant)
    per_case = pd.DataFrame(metrics.ranking_metrics(hits, cases.relevant.lengths))
    features = scenario.item_features() if features is None else features
    per_case["ild@10"] = metrics.intra_list_diversity(top[:, :10], features)
    per_case["novelty@10"] = metrics.novelty(top[:, :10], scenario.item_popularity(), scenario.n_users)
    rare = target_interactions(scenario) < item_buckets[1]  # the new and tail buckets' items
    per_case[f"{LONG_TAIL}@10"] = metrics.share_of(top[:, :10], rare)
    per_case.insert(0, "target_history", target_history(scenario, cases))
    per_case.insert(0, "item_bucket", item_bucket(scenario, cases, item_buckets))
    per_case.insert(0, "segment", cases.segment)
    per_case.insert(0, "user_id", scenario.users[cases.user])
    return Evaluation(per_case, top, summarise(per_case, top, scenario.n_target, activity_buckets))


def summarise(per_case: pd.DataFrame, top: np.ndarray, n_target: int, activity_buckets=ACTIVITY_BUCKETS) -> dict:
    """{segment: {"cases": n, metric: mean over the segment's cases, coverage@k: of its lists}} for every segment
    of segment_masks; a segment without cases has its count only."""
    summary = {}
    measured = per_case.drop(columns=[c for c in CASE_COLUMNS if c in per_case])
    for segment, mask in segment_masks(per_case, activity_buckets).items():
        values = {"cases": int(mask.sum())}
        if mask.any():
            values.update(measured.loc[mask].mean().round(6).to_dict())
            for k in metrics.KS:
                values[f"coverage@{k}"] = round(metrics.coverage(top[mask, :k], n_target), 6)
                values[f"gini@{k}"] = round(metrics.gini(top[mask, :k], n_target), 6)
        summary[segment] = values
    return summary


# ---- segments -------------------------------------------------------------------------------------------------------
def segment_masks(per_case: pd.DataFrame, activity_buckets=ACTIVITY_BUCKETS) -> dict[str, np.ndarray]:
    """{segment: which rows of a per-case table belong to it}, in display order: all, warm, cold, the item buckets,
    new+tail, the user-activity buckets. The buckets come from the table's item_bucket and target_history columns;
    a table without them (runs stored before buckets existed) has all, warm and cold only."""
    segment = per_case["segment"].to_numpy()
    masks = {"all": np.ones(len(per_case), bool), "warm": segment == "warm", "cold": segment == "cold"}
    if "item_bucket" in per_case:
        bucket = per_case["item_bucket"].to_numpy()
        masks.update({name: bucket == name for name in ITEM_BUCKET_NAMES})
        masks[RARE] = np.isin(bucket, RARE_ITEMS)
    if "target_history" in per_case:
        names = activity_names(activity_buckets)
        bucket = _bucket_of(per_case["target_history"].to_numpy(), activity_buckets)
        masks.update({name: bucket == i for i, name in enumerate(names)})
    return masks


def segment_groups(segments) -> dict[str, list[str]]:
    """Segment names (of a summary, say) grouped for display, each in the given order: "users" (all, warm, cold),
    "items" (the item buckets and new+tail), "activity" (the user-activity buckets); a group may be empty."""
    groups = {"users": [], "items": [], "activity": []}
    for name in segments:
        if name in SEGMENTS:
            groups["users"].append(name)
        elif name in ITEM_BUCKET_NAMES or name == RARE:
            groups["items"].append(name)
        elif name.startswith(USERS):
            groups["activity"].append(name)
    return groups


def segments_without_cold_users(activity_buckets=ACTIVITY_BUCKETS) -> list[str]:
    """Every segment but those that hold cold users ("cold" and the first activity bucket, which starts at no target
    history): what a model that cannot serve cold users (an external peer) reports."""
    return ["all", "warm", *ITEM_BUCKET_NAMES, RARE, *activity_names(activity_buckets)[1:]]


def item_bucket(scenario: Scenario, cases: Cases, boundaries=ITEM_BUCKETS) -> np.ndarray:
    """Per case: the bucket name of its held-out item by the item's target-domain training interactions (warm
    cases); "" for cold cases, whose relevant items are all their target items."""
    _check_boundaries("item_buckets", boundaries)
    interactions = target_interactions(scenario)
    warm = np.flatnonzero(cases.segment == "warm")
    held_out = cases.relevant.values[cases.relevant.indptr[warm]]  # a warm case has exactly one
    names = np.full(len(cases), "", dtype=object)
    names[warm] = np.asarray(ITEM_BUCKET_NAMES, dtype=object)[_bucket_of(interactions[held_out], boundaries)]
    return names


def target_interactions(scenario: Scenario) -> np.ndarray:
    """Per target item: its target-domain training interactions (what the item buckets are cut by)."""
    train = scenario.train
    return np.bincount(train.loc[train["domain"] == 0, "item"].to_numpy(), minlength=scenario.n_target)


def target_history(scenario: Scenario, cases: Cases) -> np.ndarray:
    """Per case: how many items of its history are target-domain items (0 for cold cases)."""
    case = np.repeat(np.arange(len(cases)), cases.history.lengths)
    return np.bincount(case, weights=cases.history.values < scenario.n_target, minlength=len(cases)).astype(np.int64)


def activity_names(boundaries=ACTIVITY_BUCKETS) -> list[str]:
    """The user-activity segments' names, e.g. users 0, users 1-2, users 3-5, users 6-10, users 11+."""
    _check_boundaries("activity_buckets", boundaries)
    return [USERS + r for r in bucket_ranges(boundaries)]


def bucket_ranges(boundaries) -> list[str]:
    """The values each bucket holds, as text: (1, 5, 20) -> 0, 1-4, 5-19, 20+."""
    lows, highs = (0, *boundaries), (*boundaries, None)
    return [f"{lo}+" if hi is None else str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in zip(lows, highs)]


def check_buckets(item_buckets, activity_buckets) -> None:
    """Raise CrossLensError unless both settings are strictly increasing positive integers, the item boundaries one
    fewer than the item buckets' names."""
    _check_boundaries("item_buckets", item_buckets)
    _check_boundaries("activity_buckets", activity_buckets)


# setting -> (its default, how many boundaries it must have; None: any number from 1)
_BOUNDARY_RULES = {"item_buckets": (ITEM_BUCKETS, len(ITEM_BUCKET_NAMES) - 1),
                   "activity_buckets": (ACTIVITY_BUCKETS, None)}


def _check_boundaries(name: str, boundaries) -> None:
    default, count = _BOUNDARY_RULES[name]
    values = list(boundaries) if isinstance(boundaries, (list, tuple)) else None
    valid = (values is not None and len(values) > 0 and (count is None or len(values) == count)
             and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values)
             and all(a < b for a, b in zip(values, values[1:])))
    if not valid:
        size = f"{count} " if count else ""
        raise CrossLensError(f"{name}={boundaries!r} is not {size}strictly increasing positive integers; each is "
                             f"the lowest value of the next bucket, e.g. {name}={default}.")


def _bucket_of(values: np.ndarray, boundaries) -> np.ndarray:
    """Each value's bucket index: 0 below the first boundary, i from boundaries[i-1] up to boundaries[i]."""
    return np.searchsorted(np.asarray(boundaries), values, side="right")


def validation_ndcg(model, scenario: Scenario, segment: str = "all", max_cases: int = 10_000) -> float:
    """NDCG@10 on (a fixed seeded subset of) the validation cases: the early-stopping signal."""
    cases = scenario.valid
    if segment != "all":
        cases = cases.subset(np.flatnonzero(cases.segment == segment))
    cases = cases.at_most(max_cases, scenario.spec["seed"])
    _, hits = rank(model, scenario, cases)
    return float(metrics.ranking_metrics(hits, cases.relevant.lengths, ks=(10,))["ndcg@10"].mean())

