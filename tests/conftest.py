"""Shared fixtures: a small generated two-domain dataset whose target preferences follow from source behaviour."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine import scenario as scenarios

CLUSTERS = 4


def make_domains(n_users=240, n_items=60, per_user=8, seed=0) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Two domains ('src', 'tgt') sharing every user. Each user belongs to a taste cluster and picks ~85% of their
    items, in both domains, from that cluster's items (popular ones more often); items carry the cluster as their
    category."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, CLUSTERS, n_users)
    tables = {}
    for d, domain in enumerate(("src", "tgt")):
        item_cluster = np.arange(n_items) % CLUSTERS
        items = pd.DataFrame({"item_id": [f"{domain}{i}" for i in range(n_items)],
                              "title": [f"{domain} item {i} of kind {c}" for i, c in enumerate(item_cluster)],
                              "category": [f"{domain} > kind {c}" for c in item_cluster]})
        rows = []
        for u in range(n_users):
            own = np.flatnonzero(item_cluster == cluster[u])
            weight = 1.0 / np.arange(1, len(own) + 1)  # a long tail inside each cluster
            picks = [rng.choice(own, p=weight / weight.sum()) if rng.random() < 0.85 else rng.integers(n_items)
                     for _ in range(per_user)]
            for t, i in enumerate(dict.fromkeys(picks)):  # distinct items, first-pick order
                rows.append((f"u{u}", f"{domain}{i}", 2 * t + d))
        tables[domain] = (pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype(
            {"timestamp": float}), items)
    return tables


@pytest.fixture(scope="session", autouse=True)
def isolated_workspace(tmp_path_factory):
    """Keep every test (and the text-embedding cache it may fill) out of the repository's ./workspace."""
    path = tmp_path_factory.mktemp("workspace")
    previous = os.environ.get("CROSSLENS_WORKSPACE")
    os.environ["CROSSLENS_WORKSPACE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("CROSSLENS_WORKSPACE", None)
    else:
        os.environ["CROSSLENS_WORKSPACE"] = previous


@pytest.fixture(scope="session")
def domains():
    return make_domains()


@pytest.fixture(scope="session")
def small_scenario(domains):
    return scenarios.split(domains, scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.2))


@pytest.fixture
def domain_files(tmp_path, domains):
    """The generated domains written as CSV files: {domain: (interactions_path, items_path)}."""
    paths = {}
    for name, (inter, items) in domains.items():
        inter.assign(timestamp=inter["timestamp"].astype(int)).to_csv(tmp_path / f"{name}_inter.csv", index=False)
        items.to_csv(tmp_path / f"{name}_items.csv", index=False)
        paths[name] = (tmp_path / f"{name}_inter.csv", tmp_path / f"{name}_items.csv")
    return paths


def _ingested_workspace(ws, domains):
    """Folder ws as a workspace holding the given domains (written as CSV beside it, then ingested)."""
    from engine import api
    for name, (inter, items) in domains.items():
        inter.to_csv(ws.parent / f"{ws.name}-{name}_inter.csv", index=False)
        items.to_csv(ws.parent / f"{ws.name}-{name}_items.csv", index=False)
        api.ingest(name, ws.parent / f"{ws.name}-{name}_inter.csv", ws.parent / f"{ws.name}-{name}_items.csv",
                   workspace=ws)
    return ws


@pytest.fixture(scope="session")
def ingested_workspace():
    """ingested_workspace(folder, domains) -> folder, a workspace holding those domains."""
    return _ingested_workspace


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory, domains):
    """A workspace with the generated domains and three finished runs on src -> tgt: lmkg (small, with its
    embedding maps: the one UMAP call of the test process), itemknn and pop. Returns (folder, {model: run})."""
    from engine import api
    ws = _ingested_workspace(tmp_path_factory.mktemp("trained-workspace"), domains)
    runs = {"lmkg": api.train("src", "tgt", "lmkg", epochs=1, settings={"dim": 16, "max_history": 20}, workspace=ws),
            "itemknn": api.train("src", "tgt", "itemknn", workspace=ws),
            "pop": api.train("src", "tgt", "pop", workspace=ws)}
    return ws, runs
