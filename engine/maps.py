"""Embedding maps of a run: how the domains sit in the model's learned space, and where its users are.

Written into the run folder:
- map_items.parquet: item_id, domain, title, category, brand, x, y. A 2-D UMAP projection (cosine) of the item
  vectors of every domain the model embeds; `category` is the item's (first) category path, levels joined by " > ",
  below the leading levels (almost) every item of its domain shares (the domain's root says nothing a colour by
  domain doesn't).
- map_users.parquet: user_id, segment (warm / cold), x, y. The test users' target-domain vectors, projected in the
  same UMAP fit as the items, so users sit among the items they would be recommended.
- neighbours.parquet: item_id, domain, rank, neighbour_id, neighbour_domain, similarity. Each item's 10 nearest
  neighbours in the model's own full-dimensional space (cosine).
- map_summary.json: the alignment figure (the mean share of an item's 10 nearest neighbours that come from another
  domain, in the full space: 0 = the domains lie apart; about the expected mixed share = fully mixed), that
  expected share, and per-domain figures.
Both maps are capped at max_points by a seeded sample; neighbours and alignment use every item up to
MAX_NEIGHBOUR_ITEMS, a seeded sample of that many beyond (each still against every item).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import kg, text
from .errors import CrossLensError
from .models import MODELS
from .models.base import learns_vectors
from .store import Store, open_workspace, write_json, write_parquet

K = 10
MAX_POINTS = 30000
MAX_NEIGHBOUR_ITEMS = 100_000
FILES = ("map_items.parquet", "map_users.parquet", "neighbours.parquet", "map_summary.json")


def require_vectors(record: dict) -> None:
    """A readable error unless the run is a finished run of a model that learns item vectors (checked from the
    record, before any slow load)."""
    cls = MODELS.get(record["model"])
    if record["status"] != "done" or cls is None or not learns_vectors(cls):
        mappable = ", ".join(m for m, c in MODELS.items() if learns_vectors(c))
        raise CrossLensError(f"run {record['id']} ({record['status']} '{record['model']}') has no item vectors to "
                             f"map: maps are made of the item vectors of a finished run of {mappable}.")


def write_maps(folder, sc, model, max_points: int = MAX_POINTS, seed: int = 0) -> dict:
    """Compute the maps of a fitted model on its scenario and write them into `folder` (each file atomically)."""
    started = time.perf_counter()
    with torch.no_grad():
        items = F.normalize(model.item_vectors().float().cpu(), dim=-1)
        users = user_vectors(model, sc)
    vector_seconds = time.perf_counter() - started
    table = item_table(sc, len(items))
    domains = table["domain"].to_numpy()

    rng = np.random.default_rng(seed)
    # every item against all items costs items^2: past MAX_NEIGHBOUR_ITEMS a seeded sample of items has its
    # neighbours listed and measured for the alignment figure (still against every item), so the cost stays linear
    queries = _sample(rng, len(items), MAX_NEIGHBOUR_ITEMS)
    index, similarity = nearest(items, K, queries)
    neighbours = pd.DataFrame({
        "item_id": np.repeat(table["item_id"].to_numpy()[queries], K), "domain": np.repeat(domains[queries], K),
        "rank": np.tile(np.arange(1, K + 1), len(queries)), "neighbour_id": table["item_id"].to_numpy()[index.ravel()],
        "neighbour_domain": domains[index.ravel()], "similarity": similarity.ravel()})
    alignment = cross_domain_share(index, domains, queries)
    neighbour_seconds = time.perf_counter() - started - vector_seconds

    item_rows = _sample(rng, len(items), max_points)
    cases = sc.test
    user_rows = _sample(rng, len(cases), max_points) if users is not None else np.zeros(0, np.int64)
    points = [items[item_rows]] + ([users[user_rows]] if users is not None else [])
    xy = project(torch.cat(points).numpy(), seed)
    mapped = table.iloc[item_rows].reset_index(drop=True).assign(x=xy[: len(item_rows), 0], y=xy[: len(item_rows), 1])
    user_map = pd.DataFrame({"user_id": sc.users[cases.user[user_rows]].astype(str),
                             "segment": cases.segment[user_rows].astype(str),
                             "x": xy[len(item_rows):, 0], "y": xy[len(item_rows):, 1]})

    write_parquet(mapped, folder / "map_items.parquet")
    write_parquet(user_map, folder / "map_users.parquet")
    write_parquet(neighbours, folder / "neighbours.parquet")
    summary = {"k": K, **alignment, "items": len(items), "items_mapped": len(item_rows),
               "items_with_neighbours": len(queries),
               "users": 0 if users is None else len(users), "users_mapped": len(user_rows),
               "metric": "cosine", "seed": seed, "max_points": max_points,
               "seconds": {"vectors": round(vector_seconds, 3), "neighbours": round(neighbour_seconds, 3),
                           "umap": round(time.perf_counter() - started - vector_seconds - neighbour_seconds, 3)}}
    write_json(summary, folder / "map_summary.json")
    return summary


def item_table(sc, n: int) -> pd.DataFrame:
    """item_id, domain, title, category, brand of the first n global items."""
    items = sc.items.iloc[:n].reset_index(drop=True)
    table = pd.DataFrame({"item_id": items["item_id"].astype(str), "domain": items["domain"].astype(str),
                          "title": items["title"].astype(str)})
    table["category"] = _category(items)
    table["brand"] = items["brand"].astype(str) if "brand" in items.columns else ""
    return table


def _category(items: pd.DataFrame) -> pd.Series:
    """Each item's first category path below the leading levels its domain's items share, as "a > b > c"."""
    columns = kg.attribute_columns(items)
    named = [c for c in columns if "categor" in c.lower()]
    hierarchical = [c for c in columns if items[c].astype(str).str.contains(">").any()]
    column = (named or hierarchical or [None])[0]
    if column is None:
        return pd.Series("", index=items.index)
    out = pd.Series("", index=items.index)
    for _, values in items[column].groupby(items["domain"]):
        kept = text.without_shared_levels(values.astype(str))  # the rule item texts follow too
        out[values.index] = kept.str.split("|").str[0].str.split(r"\s*>\s*", regex=True).str.join(" > ")
    return out.str.strip()


def user_vectors(model, sc) -> torch.Tensor | None:
    """Normalised target-domain vectors of the test cases' users (ItemSpace.user_vectors: from each case's history
    for models that score from it, from the user factors for factor models); None without test cases."""
    cases = sc.test
    if len(cases) == 0:
        return None
    out = []
    for lo in range(0, len(cases), 1024):
        batch = sc.batch(cases, np.arange(lo, min(lo + 1024, len(cases)))).to(model.device)
        out.append(model.user_vectors(batch).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def nearest(vectors: torch.Tensor, k: int = K, rows: np.ndarray | None = None, chunk: int = 512
            ) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows (cosine; rows must be normalised) of each row in `rows` (default: all of them),
    among all rows: (len(rows), k) indices and similarities."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    k = min(k, len(vectors) - 1)
    index = np.zeros((len(rows), k), np.int64)
    similarity = np.zeros((len(rows), k), np.float32)
    for lo in range(0, len(rows), chunk):
        which = torch.from_numpy(rows[lo:lo + chunk])
        sims = vectors[which] @ vectors.T
        sims[torch.arange(len(which)), which] = -torch.inf  # not its own neighbour
        top = sims.topk(k, dim=1)
        index[lo:lo + chunk], similarity[lo:lo + chunk] = top.indices.numpy(), top.values.numpy()
    return index, similarity


def cross_domain_share(index: np.ndarray, domains: np.ndarray, rows: np.ndarray | None = None) -> dict:
    """The mean share of the neighbours (index: (len(rows), k), of the items `rows`, default all) that come from
    another domain, and what it would be if the domains were fully mixed (each neighbour drawn at random from the
    other items); overall and per domain (`items`: the domain's items, every one counted or not)."""
    domains = np.asarray(domains)
    n = len(domains)
    names, codes, sizes = np.unique(domains, return_inverse=True, return_counts=True)
    own = codes if rows is None else codes[rows]
    other = (codes[index] != own[:, None]).mean(1) if index.shape[1] else np.zeros(len(own))
    mixed = (n - sizes[own]) / max(n - 1, 1)
    return {"alignment": float(other.mean()), "expected_mixed": float(mixed.mean()),
            "per_domain": {str(d): {"items": int(sizes[i]), "alignment": _mean(other[own == i]),
                                    "expected_mixed": _mean(mixed[own == i])} for i, d in enumerate(names)}}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None  # a domain none of whose items was sampled


def project(points: np.ndarray, seed: int) -> np.ndarray:
    """(n, 2) UMAP coordinates of the rows (cosine, seeded: the same run gives the same map)."""
    if len(points) < 4:  # too few for a neighbour graph: nothing to lay out
        return np.zeros((len(points), 2), np.float32)
    import umap  # slow to import and compiled on first use: only when a map is made
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(points) - 1), metric="cosine",
                        random_state=seed, n_jobs=1, init="spectral" if len(points) > 50 else "random")
    return reducer.fit_transform(points).astype(np.float32)


def _sample(rng, n: int, cap: int) -> np.ndarray:
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


def read_maps(run_id: str, workspace=None) -> dict:
    """A run's stored maps: items and users (DataFrames) and the summary; a readable error when it has none."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    folder = store.run_dir(record["id"])
    if not all((folder / name).exists() for name in FILES):
        without = ", ".join(n for n, m in MODELS.items() if not learns_vectors(m))
        raise CrossLensError(f"run {run_id} ({record['model']}) has no embedding maps: models without item vectors "
                             f"({without}) have none, and others get them when training ends; "
                             f"`python -m engine map {run_id}` computes them.")
    return {"items": pd.read_parquet(folder / "map_items.parquet"),
            "users": pd.read_parquet(folder / "map_users.parquet"),
            "summary": json.loads((folder / "map_summary.json").read_text())}


def domain_neighbours(run_id: str, item_id: str, k: int = 5, workspace=None) -> pd.DataFrame:
    """The k nearest items to `item_id` in each domain (cosine in the run's item space): domain, rank, item_id,
    title, similarity. The stored neighbours are the nearest overall, which rarely include the other domain."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    path = store.run_dir(record["id"]) / "item_vectors.parquet"
    if not path.exists():
        raise CrossLensError(f"run {run_id} ({record['model']}) stores no item vectors.")
    table = pd.read_parquet(path)
    hit = np.flatnonzero(table["item_id"].astype(str).to_numpy() == str(item_id))
    if not len(hit):
        raise CrossLensError(f"item '{item_id}' is not in run {run_id}'s item space; pick an item from the map.")
    vectors = F.normalize(torch.as_tensor(np.stack(table["vector"].to_numpy()), dtype=torch.float32), dim=-1)
    similarity = (vectors @ vectors[hit[0]]).numpy()
    similarity[hit[0]] = -np.inf
    frames = []
    for domain in table["domain"].unique():
        rows = np.flatnonzero(table["domain"].to_numpy() == domain)
        best = rows[np.argsort(-similarity[rows], kind="stable")[:k]]
        frames.append(pd.DataFrame({"domain": domain, "rank": np.arange(1, len(best) + 1),
                                    "item_id": table["item_id"].to_numpy()[best], "similarity": similarity[best]}))
    near = pd.concat(frames, ignore_index=True)
    return near.merge(_titles(store, near["domain"].unique()), on=["domain", "item_id"], how="left")


def _titles(store: Store, domains) -> pd.DataFrame:
    frames = []
    for domain in domains:
        items = store.load_table(domain, "items") if store.dataset(domain) else None
        if items is not None:
            frames.append(items[["item_id", "title"]].assign(domain=domain))
    return pd.concat(frames) if frames else pd.DataFrame(columns=["item_id", "title", "domain"])
