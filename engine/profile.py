"""What an analyst reads about stored datasets: size, sparsity, how complete each item attribute is, how activity
and popularity are distributed (the long tail), the most interacted items, a preview, and how many users each
pair of domains shares (the bridge a cross-domain scenario stands on)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .store import open_workspace

NOT_ATTRIBUTES = ("item_id", "title", "description")
PERCENTILES = {"p25": 25, "median": 50, "p75": 75, "p90": 90, "p99": 99}
HEAD_FRACTION = 0.2  # "the top 20 % of items" and "the last 20 % of interactions" of the long-tail figures
CURVE_POINTS = 201  # the long-tail curve at every 0.5 % of the items, however many items there are


def dataset_profile(name: str, workspace=None, preview_rows: int = 20, top_n: int = 20) -> dict:
    """The dataset's headline figures, attribute coverage and preview, and (computed on codes, not rows):
    `distributions` (per user: interactions and distinct items; per item of the catalogue, never-interacted ones
    included: interactions and distinct users; each as min, percentiles, max and mean), `histograms` (the same
    counts in power-of-two bins), `long_tail` (the rank-frequency curve and its head and tail shares) and
    `top_items` (the `top_n` most interacted items)."""
    store = open_workspace(workspace)
    record = store.require_dataset(name)
    inter = store.load_table(name, "interactions")
    items = store.load_table(name, "items")
    n_users, n_items = record["n_users"], record["n_items"]
    counts = _counts(inter, items)
    activity = {"interactions_per_user": counts["user_interactions"], "items_per_user": counts["user_items"],
                "interactions_per_item": counts["item_interactions"], "users_per_item": counts["item_users"]}
    return {"name": name, "version": record["version"], "created": record["created"], "n_users": n_users,
            "n_items": n_items, "n_interactions": record["n_interactions"], "n_triples": record["n_triples"],
            "sparsity": 1.0 - counts["n_pairs"] / max(n_users * n_items, 1),
            "interactions_per_user": record["n_interactions"] / max(n_users, 1),
            "attribute_coverage": _coverage(items), "warnings": record["info"].get("warnings", []),
            "preview": {"interactions": inter.head(preview_rows),
                        "items": items.head(preview_rows) if items is not None else None},
            "n_distinct_pairs": counts["n_pairs"],
            "distributions": {what: _summary(values) for what, values in activity.items()},
            "histograms": {what: _power_of_two_bins(values) for what, values in activity.items()},
            "long_tail": _long_tail(counts["item_interactions"]),
            "top_items": _top_items(counts, items, top_n)}


def _coverage(items: pd.DataFrame | None) -> dict[str, float]:
    """Share of items with a value, per column. The items reader adds an empty `description` when the upload has
    none, so an entirely empty description is left out: it reads as "not uploaded" (an uploaded but empty one
    would say the same)."""
    if items is None:
        return {}
    coverage = {}
    front = [c for c in ("title", "description") if c in items.columns]
    for column in [*front, *[c for c in items.columns if c not in NOT_ATTRIBUTES]]:
        values = items[column].astype("string").str.strip()
        coverage[column] = float((values.notna() & (values != "")).mean())
    if coverage.get("description") == 0.0:
        del coverage["description"]
    return coverage


def _counts(inter: pd.DataFrame, items: pd.DataFrame | None) -> dict:
    """Per user and per item (the items table's items first, in its order, then any others the interactions
    name): interactions and distinct partners, from integer codes so that millions of rows stay fast."""
    catalogue = items["item_id"] if items is not None else inter["item_id"].iloc[:0]
    item_codes, item_ids = pd.factorize(pd.concat([catalogue, inter["item_id"]], ignore_index=True))
    item_codes = item_codes[len(catalogue):]
    user_codes, user_ids = pd.factorize(inter["user_id"])
    n_item_ids = len(item_ids)
    pairs = pd.unique(user_codes.astype(np.int64) * n_item_ids + item_codes)  # hashing: faster than sorting
    return {"item_ids": item_ids, "n_pairs": len(pairs),
            "user_interactions": np.bincount(user_codes, minlength=len(user_ids)),
            "user_items": np.bincount(pairs // n_item_ids, minlength=len(user_ids)),
            "item_interactions": np.bincount(item_codes, minlength=n_item_ids),
            "item_users": np.bincount(pairs % n_item_ids, minlength=n_item_ids)}


def _summary(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"min": 0.0, **dict.fromkeys(PERCENTILES, 0.0), "max": 0.0, "mean": 0.0}
    percentiles = np.percentile(values, list(PERCENTILES.values()))
    return {"min": float(values.min()), **{k: float(v) for k, v in zip(PERCENTILES, percentiles)},
            "max": float(values.max()), "mean": float(values.mean())}


def _power_of_two_bins(values: np.ndarray) -> pd.DataFrame:
    """How many users (or items) have each count, in bins 0, 1, 2, 3-4, 5-8, 9-16, ... (evenly spaced on a log
    axis, which a long-tailed count needs) from the smallest count on; rows: bin (label), low, high, count."""
    positive = values[values > 0]
    exponent = np.frexp(positive - 1)[1]  # the bit length of v - 1: bin k holds 2^(k-1) < v <= 2^k
    per_bin = np.bincount(exponent) if len(positive) else np.zeros(0, dtype=int)
    high = 2 ** np.arange(len(per_bin))
    low = np.where(high > 1, high // 2 + 1, 1)
    zeros = int((values == 0).sum())
    first = int(np.argmax(per_bin > 0)) if len(positive) and not zeros else 0  # from the smallest count there is
    bins = pd.DataFrame({"low": low, "high": high, "count": per_bin}).iloc[first:].reset_index(drop=True)
    if zeros:
        bins = pd.concat([pd.DataFrame({"low": [0], "high": [0], "count": [zeros]}), bins], ignore_index=True)
    bins.insert(0, "bin", [str(lo) if lo == hi else f"{lo}–{hi}" for lo, hi in zip(bins["low"], bins["high"])])
    return bins


def _long_tail(item_interactions: np.ndarray) -> dict:
    """The rank-frequency curve (share of the interactions that the top x % of the items get, items by
    popularity), the head share (what the top 20 % of items get) and the tail share (how many of the items, the
    least popular first, together get only the last 20 % of the interactions), and the never-interacted items."""
    n, total = len(item_interactions), max(int(item_interactions.sum()), 1)
    from_least = np.sort(item_interactions)
    covered = np.concatenate([[0], np.cumsum(from_least[::-1])]) / total  # covered[k]: what the top k items get
    items_pct = np.linspace(0, 100, CURVE_POINTS)
    curve = pd.DataFrame({"items_pct": items_pct,
                          "interactions_pct": 100 * covered[np.round(items_pct / 100 * n).astype(int)]})
    head = covered[int(round(HEAD_FRACTION * n))]
    tail_items = int((np.cumsum(from_least) <= HEAD_FRACTION * total).sum())
    return {"curve": curve, "head_share": float(head), "head_fraction": HEAD_FRACTION,
            "tail_item_share": tail_items / max(n, 1),
            "items_without_interactions": int((item_interactions == 0).sum())}


def _top_items(counts: dict, items: pd.DataFrame | None, top_n: int) -> pd.DataFrame:
    """The most interacted items (ties: more distinct users first, then the catalogue's order): item_id, title
    (when there is an items table), interactions, users and share of all interactions."""
    interactions, users = counts["item_interactions"], counts["item_users"]
    order = np.lexsort((np.arange(len(interactions)), -users, -interactions))[:top_n]
    top = pd.DataFrame({"item_id": np.asarray(counts["item_ids"], dtype=object)[order]})
    if items is not None:
        top["title"] = top["item_id"].map(items.set_index("item_id")["title"]).fillna("")
    return top.assign(interactions=interactions[order], users=users[order],
                      share=interactions[order] / max(interactions.sum(), 1))


def _user_counts(store) -> dict[str, pd.Series]:
    """{domain: interactions per user_id}, every stored domain."""
    return {d["name"]: store.load_table(d["name"], "interactions")["user_id"].value_counts()
            for d in store.datasets()}


def shared_users(workspace=None) -> pd.DataFrame:
    """Domains x domains: users present in both (the diagonal: users of the domain)."""
    users = {name: counts.index for name, counts in _user_counts(open_workspace(workspace)).items()}
    names = list(users)
    return pd.DataFrame([[len(users[a].intersection(users[b])) for b in names] for a in names], index=names,
                        columns=names)


def domain_overlap(workspace=None) -> pd.DataFrame:
    """One row per pair of domains (a before b in name order): the users they share, what share of each domain's
    users that is, and the shared users' interactions in each domain (and their share of its interactions)."""
    counts = _user_counts(open_workspace(workspace))
    names = list(counts)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = counts[a].index.intersection(counts[b].index)
            row = {"domain_a": a, "domain_b": b, "shared_users": len(shared)}
            for side, name in (("a", a), ("b", b)):
                row[f"share_of_{side}_users"] = len(shared) / max(len(counts[name]), 1)
                row[f"interactions_in_{side}"] = int(counts[name].reindex(shared).sum())
                row[f"share_of_{side}_interactions"] = row[f"interactions_in_{side}"] / max(counts[name].sum(), 1)
            rows.append(row)
    return pd.DataFrame(rows, columns=["domain_a", "domain_b", "shared_users", "share_of_a_users",
                                       "interactions_in_a", "share_of_a_interactions", "share_of_b_users",
                                       "interactions_in_b", "share_of_b_interactions"])


def runs_using(name: str, workspace=None, version: str | None = None) -> list[dict]:
    """Runs whose scenario reads the dataset (as source or target): any stored version of it, or `version`."""
    runs = [(r, r["scenario"].get("versions", {})) for r in open_workspace(workspace).runs()]
    return [r for r, versions in runs if name in versions and version in (None, versions[name])]
