"""What an analyst reads about stored datasets: size, sparsity, how complete each item attribute is, a preview,
and how many users each pair of domains shares (the bridge a cross-domain scenario stands on)."""
from __future__ import annotations

import pandas as pd

from .store import open_workspace

NOT_ATTRIBUTES = ("item_id", "title", "description")


def dataset_profile(name: str, workspace=None, preview_rows: int = 20) -> dict:
    store = open_workspace(workspace)
    record = store.require_dataset(name)
    inter = store.load_table(name, "interactions")
    items = store.load_table(name, "items")
    n_users, n_items = record["n_users"], record["n_items"]
    distinct = len(inter[["user_id", "item_id"]].drop_duplicates())
    coverage = {}
    if items is not None:
        for column in ["title", "description", *[c for c in items.columns if c not in NOT_ATTRIBUTES]]:
            values = items[column].astype("string").str.strip()
            coverage[column] = float((values.notna() & (values != "")).mean())
    return {"name": name, "version": record["version"], "created": record["created"], "n_users": n_users,
            "n_items": n_items, "n_interactions": record["n_interactions"], "n_triples": record["n_triples"],
            "sparsity": 1.0 - distinct / max(n_users * n_items, 1),
            "interactions_per_user": record["n_interactions"] / max(n_users, 1),
            "attribute_coverage": coverage, "warnings": record["info"].get("warnings", []),
            "preview": {"interactions": inter.head(preview_rows),
                        "items": items.head(preview_rows) if items is not None else None}}


def shared_users(workspace=None) -> pd.DataFrame:
    """Domains x domains: users present in both (the diagonal: users of the domain)."""
    store = open_workspace(workspace)
    users = {d["name"]: set(store.load_table(d["name"], "interactions")["user_id"].unique())
             for d in store.datasets()}
    names = list(users)
    return pd.DataFrame([[len(users[a] & users[b]) for b in names] for a in names], index=names, columns=names)


def runs_using(name: str, workspace=None, version: str | None = None) -> list[dict]:
    """Runs whose scenario reads the dataset (as source or target): any stored version of it, or `version`."""
    runs = [(r, r["scenario"].get("versions", {})) for r in open_workspace(workspace).runs()]
    return [r for r, versions in runs if name in versions and version in (None, versions[name])]
