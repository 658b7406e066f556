"""Recommendations out: every user from their whole history, users from a file, reasons checked by re-scoring,
spreadsheet-safe CSV, refusals before anything is written."""
import numpy as np
import pandas as pd
import pytest
import torch

from engine import api, deliver
from engine.errors import CrossLensError
from engine.scenario import Batch
from tests.conftest import make_domains


def test_known_histories_hold_every_interaction_oldest_first(small_scenario, domains):
    sc = small_scenario
    users, histories = sc.known_histories()
    assert len(users) == sc.n_users and histories.lengths.sum() == sum(len(t[0]) for t in domains.values())
    index = {(d, i): g for g, (d, i) in enumerate(zip(sc.items["domain"], sc.items["item_id"]))}
    for u in (0, 7, len(users) - 1):
        user_id = sc.users[users[u]]
        rows = pd.concat([t[0].assign(domain=d) for d, t in domains.items()])
        rows = rows[rows["user_id"] == user_id].sort_values("timestamp", kind="stable")
        assert histories[u].tolist() == [index[(d, i)] for d, i in zip(rows["domain"], rows["item_id"])]


def test_every_user_gets_k_recommendations_none_of_them_known(trained_workspace, tmp_path):
    ws, runs = trained_workspace
    result = api.recommend_to_file(runs["itemknn"]["id"], tmp_path / "recs.parquet", k=5, workspace=ws)
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    sc = api.LoadedRun(runs["itemknn"]["id"], ws).sc
    assert result["users"] == sc.n_users and len(recs) == 5 * sc.n_users == result["rows"]
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 0).all()
    users, histories = sc.known_histories()
    known = {sc.users[u]: set(sc.items["item_id"].iloc[histories[r]]) for r, u in enumerate(users)}
    assert not any(item in known[user] for user, item in zip(recs["user_id"], recs["item_id"]))
    assert set(recs["item_id"]) <= set(sc.items["item_id"][: sc.n_target])


def test_a_user_from_a_file_is_scored_as_the_same_history_is_in_the_scenario(trained_workspace, tmp_path):
    ws, runs = trained_workspace
    run = api.LoadedRun(runs["itemknn"]["id"], ws)
    run.recommend_to_file(tmp_path / "all.csv", k=5)
    everyone = pd.read_csv(tmp_path / "all.csv", dtype={"item_id": str})
    users, histories = run.sc.known_histories()
    copied = run.sc.items.iloc[histories[3]]
    pd.DataFrame({"user_id": "stranger", "item_id": list(copied["item_id"]) + ["no-such-item"],
                  "timestamp": np.arange(len(copied) + 1), "domain": list(copied["domain"]) + ["tgt"]}) \
        .to_csv(tmp_path / "histories.csv", index=False)
    result = run.recommend_to_file(tmp_path / "theirs.csv", k=5, histories=tmp_path / "histories.csv")
    theirs = pd.read_csv(tmp_path / "theirs.csv", dtype={"item_id": str})
    assert result["users"] == 1 and "no-such-item" in result["warnings"][0]
    same = everyone[everyone["user_id"] == run.sc.users[users[3]]]
    assert theirs["item_id"].tolist() == same["item_id"].tolist()
    assert np.allclose(theirs["score"], same["score"], rtol=1e-5)


def test_each_reason_is_the_history_item_whose_removal_lowers_the_score_most(trained_workspace, tmp_path):
    ws, runs = trained_workspace
    run = api.LoadedRun(runs["itemknn"]["id"], ws)
    run.recommend_to_file(tmp_path / "why.parquet", k=3, reasons=True)
    recs = pd.read_parquet(tmp_path / "why.parquet")
    users, histories = run.sc.known_histories()
    row_of = {run.sc.users[u]: r for r, u in enumerate(users)}
    position = {i: g for g, i in enumerate(run.sc.items["item_id"])}
    assert (recs["reason_item_id"] != "").mean() > 0.5
    for _, rec in recs.head(12).iterrows():
        history = histories[row_of[rec["user_id"]]][-deliver.REASON_ITEMS:]
        shorter = [np.delete(history, p) for p in range(len(history))]
        padded = torch.tensor(np.array([np.pad(h, (0, 1), constant_values=-1) for h in shorter]))
        with torch.no_grad():
            rescored = run.model.score(Batch(torch.zeros(len(padded), dtype=torch.long), padded))
        drops = rec["score"] - rescored[:, position[rec["item_id"]]].numpy()
        if rec["reason_item_id"]:
            assert drops.max() > 0 and position[rec["reason_item_id"]] == history[int(drops.argmax())]
        else:
            assert drops.max() <= 0


def test_csv_cells_that_would_run_as_formulas_are_neutralised(tmp_path, ingested_workspace):
    domains = make_domains(n_users=60, n_items=30)
    domains["tgt"][1]["title"] = "=HYPERLINK(\"http://x\")" + domains["tgt"][1]["title"]
    ws = ingested_workspace(tmp_path / "ws", domains)
    run = api.train("src", "tgt", "pop", workspace=ws)
    api.recommend_to_file(run["id"], tmp_path / "recs.csv", k=2, workspace=ws)
    titles = pd.read_csv(tmp_path / "recs.csv")["title"]
    assert titles.str.startswith("'=HYPERLINK").all()


def test_refusals_come_before_anything_is_written(trained_workspace, tmp_path):
    ws, runs = trained_workspace
    for out, options, message in ((tmp_path / "recs.xlsx", {}, ".csv or .parquet"),
                                  (tmp_path / "missing" / "recs.csv", {}, "does not exist"),
                                  (tmp_path / "recs.csv", {"k": 0}, "k must be"),
                                  (tmp_path / "recs.csv", {"reasons": True}, "trained vectors")):
        with pytest.raises(CrossLensError, match=message):
            api.recommend_to_file(runs["pop"]["id"], out, workspace=ws, **options)
    pd.DataFrame({"user_id": ["x"], "item_id": ["nothing-known"]}).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(CrossLensError, match="names no item"):
        api.recommend_to_file(runs["itemknn"]["id"], tmp_path / "recs.csv", histories=tmp_path / "h.csv",
                              workspace=ws)
    assert list(tmp_path.iterdir()) == [tmp_path / "h.csv"]  # no output, no partial file


def test_a_user_who_knows_nearly_every_item_gets_only_unknown_ones(trained_workspace, tmp_path):
    ws, runs = trained_workspace
    run = api.LoadedRun(runs["itemknn"]["id"], ws)
    targets = run.sc.items["item_id"][: run.sc.n_target]
    pd.DataFrame({"user_id": "collector", "item_id": targets[2:]}).to_csv(tmp_path / "h.csv", index=False)
    run.recommend_to_file(tmp_path / "recs.csv", k=10, histories=tmp_path / "h.csv")
    assert sorted(pd.read_csv(tmp_path / "recs.csv")["item_id"]) == sorted(targets[:2])
