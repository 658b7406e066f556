"""Embedding maps: the files a trained run gets, and the domain-alignment figure on vectors whose answer is known."""
import json

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from engine import api, maps
from engine.store import Store


def alignment(vectors: torch.Tensor, domains: np.ndarray) -> dict:
    index, _ = maps.nearest(F.normalize(vectors, dim=-1), 10)
    return maps.cross_domain_share(index, domains)


def test_two_disjoint_domains_score_zero_and_one_mixed_cloud_scores_the_mixed_share():
    rng = np.random.default_rng(0)
    domains = np.array(["a"] * 300 + ["b"] * 100)
    apart = torch.as_tensor(rng.normal(size=(400, 8)) * 0.05, dtype=torch.float32)
    apart[:300, 0] += 1.0  # domain a around +x, domain b around +y: no item has a neighbour from the other
    apart[300:, 1] += 1.0
    split = alignment(apart, domains)
    assert split["alignment"] == 0.0
    # fully mixed: an item of a expects 100/399 of its neighbours from b, an item of b 300/399 from a
    expected = (300 * 100 / 399 + 100 * 300 / 399) / 400
    assert abs(split["expected_mixed"] - expected) < 1e-9
    mixed = alignment(torch.as_tensor(rng.normal(size=(400, 8)), dtype=torch.float32), domains)
    assert abs(mixed["alignment"] - expected) < 0.05
    assert abs(mixed["per_domain"]["b"]["alignment"] - 300 / 399) < 0.08


def test_nearest_neighbours_are_by_cosine_and_never_the_item_itself():
    vectors = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.1, 1.0], [-1.0, 0.0]]), dim=-1)
    index, similarity = maps.nearest(vectors, 2)
    assert index.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert abs(similarity[0, 0] - float(vectors[0] @ vectors[1])) < 1e-6


def test_neighbours_of_some_rows_are_those_rows_of_every_rows_neighbours_and_their_alignment_counts_only_them():
    # past MAX_NEIGHBOUR_ITEMS the maps job lists the neighbours of a sample of items, each against every item
    rng = np.random.default_rng(1)
    vectors = F.normalize(torch.as_tensor(rng.normal(size=(300, 6)), dtype=torch.float32), dim=-1)
    domains = np.array(["a"] * 200 + ["b"] * 100)
    every, every_sim = maps.nearest(vectors, 5)
    rows = np.array([3, 150, 250, 299])
    some, some_sim = maps.nearest(vectors, 5, rows, chunk=3)  # a chunk boundary inside the rows
    assert (some == every[rows]).all() and np.allclose(some_sim, every_sim[rows])
    share = maps.cross_domain_share(some, domains, rows)
    own = np.array(["a", "a", "b", "b"])
    assert share["alignment"] == (domains[some] != own[:, None]).mean()
    assert share["per_domain"]["b"]["items"] == 100  # the domain's size, not how many of it were sampled
    assert maps.cross_domain_share(some[:2], domains, rows[:2])["per_domain"]["b"]["alignment"] is None


def test_a_trained_lmkg_run_gets_its_maps(trained_workspace, tmp_path, domain_files):
    ws, runs = trained_workspace
    folder = Store(ws).run_dir(runs["lmkg"]["id"])
    items = pd.read_parquet(folder / "map_items.parquet")
    assert list(items.columns) == ["item_id", "domain", "title", "category", "brand", "x", "y"]
    assert len(items) == 120 and set(items["domain"]) == {"src", "tgt"}  # every item of both domains
    assert set(items["category"]) == {f"kind {c}" for c in range(4)}  # below the shared root 'src' / 'tgt'
    assert np.isfinite(items[["x", "y"]].to_numpy()).all() and items["x"].std() > 0
    users = pd.read_parquet(folder / "map_users.parquet")
    assert list(users.columns) == ["user_id", "segment", "x", "y"]
    assert set(users["segment"]) == {"warm", "cold"} and users["user_id"].is_unique
    neighbours = pd.read_parquet(folder / "neighbours.parquet")
    assert list(neighbours.columns) == ["item_id", "domain", "rank", "neighbour_id", "neighbour_domain", "similarity"]
    assert len(neighbours) == 120 * 10
    assert not ((neighbours["item_id"] == neighbours["neighbour_id"])
                & (neighbours["domain"] == neighbours["neighbour_domain"])).any()
    summary = json.loads((folder / "map_summary.json").read_text())
    assert 0 <= summary["alignment"] <= 1 and abs(summary["expected_mixed"] - 60 / 119) < 1e-9
    assert not list(folder.glob(".*.tmp"))  # atomic writes leave no temporary files

    # the dashboard's reads: the maps as stored, and the nearest items of each domain in the run's space
    stored = maps.read_maps(runs["lmkg"]["id"], ws)
    assert len(stored["items"]) == 120 and stored["summary"]["k"] == 10
    near = maps.domain_neighbours(runs["lmkg"]["id"], "tgt3", k=4, workspace=ws)
    assert near.groupby("domain").size().to_dict() == {"src": 4, "tgt": 4}
    assert "tgt3" not in set(near["item_id"]) and near["title"].notna().all()
    assert near.groupby("domain")["similarity"].apply(lambda s: s.is_monotonic_decreasing).all()

    # switched off, a run gets none (the benchmark's choice)
    quiet = tmp_path / "quiet"
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=quiet)
    run = api.train("src", "tgt", "bpr", epochs=1, workspace=quiet, maps=False)
    assert not any((Store(quiet).run_dir(run["id"]) / f).exists() for f in maps.FILES)


def test_map_command_refuses_a_model_without_item_vectors(tmp_path, domain_files, capsys):
    from engine.__main__ import main
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=ws)
    run = api.train("src", "tgt", "pop", workspace=ws)["id"]
    assert main(["map", run, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no item vectors" in err and "Traceback" not in err


def test_an_items_category_keeps_its_levels_below_the_shared_root():
    """The map stores whole paths (the Embeddings page colours by the level an analyst picks), first path only."""
    items = pd.DataFrame({"item_id": list("abcd"), "title": list("abcd"), "domain": "office",
                          "category": ["office > pens > gel", "office > pens > ball|office > ink", "office > paper",
                                       "office > paper > a4"]})
    assert maps._category(items).tolist() == [
        "pens > gel", "pens > ball", "paper", "paper > a4"]
