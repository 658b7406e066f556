"""RecBole export and peers: the exported files are exactly the scenario's target training data and warm test
cases, and a peer's ranked lists are scored by our own metric code."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine import __main__ as cli
from engine import api, evaluate, export, peers
from engine.errors import CrossLensError
from engine.models import MODELS


def read_inter(folder: Path) -> tuple[list[str], list[tuple]]:
    with open(folder / f"{folder.name}.inter", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [(u, i, float(t)) for u, i, t in rows[1:]]


def read_cases(folder: Path) -> list[dict]:
    return [json.loads(line) for line in open(folder / f"{folder.name}.test.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def exported(small_scenario, tmp_path_factory):
    return export.export_recbole(small_scenario, tmp_path_factory.mktemp("export"))


def test_inter_file_is_the_target_training_data(small_scenario, exported):
    sc = small_scenario
    header, rows = read_inter(exported)
    assert "\t".join(header) == "user_id:token\titem_id:token\ttimestamp:float"
    train = sc.train[sc.train["domain"] == 0]
    expected = list(zip(sc.users[train["user"]], sc.items["item_id"].to_numpy()[train["item"]], train["timestamp"]))
    assert rows == expected
    assert all(i.startswith("tgt") for _, i, _ in rows)
    cold = sc.users[np.concatenate([c.user[c.segment == "cold"] for c in (sc.valid, sc.test)])]
    assert not {u for u, _, _ in rows} & set(cold)


def test_no_held_out_item_of_a_warm_user_is_exported(small_scenario, exported):
    sc = small_scenario
    _, rows = read_inter(exported)
    trained = {(u, i) for u, i, _ in rows}
    item_ids = sc.items["item_id"].to_numpy()
    for cases in (sc.valid, sc.test):
        for row in np.flatnonzero(cases.segment == "warm"):
            user = sc.users[cases.user[row]]
            assert not any((user, item_ids[i]) in trained for i in cases.relevant[row])


def test_cases_file_lists_the_warm_test_cases(small_scenario, exported):
    sc, cases = small_scenario, read_cases(exported)
    warm = np.flatnonzero(sc.test.segment == "warm")
    assert [c["case"] for c in cases] == warm.tolist()
    item_ids = sc.items["item_id"].to_numpy()
    for c, row in zip(cases, warm):
        history = sc.test.history[row]
        assert c["user_id"] == sc.users[sc.test.user[row]]
        assert c["history"] == item_ids[history[history < sc.n_target]].tolist()  # target only, oldest first
        assert c["exclude"] == item_ids[sc.test.exclude[row]].tolist()
        assert c["relevant"] == item_ids[sc.test.relevant[row]].tolist()
    assert any(len(c["history"]) < len(sc.test.history[c["case"]]) for c in cases)  # source items were dropped


def test_export_replaces_an_earlier_one_atomically(small_scenario, exported):
    again = export.export_recbole(small_scenario, exported.parent)
    assert again == exported
    assert sorted(p.name for p in exported.parent.iterdir()) == [exported.name]  # no staging or old folders left


def test_unsafe_ids_are_refused(small_scenario, tmp_path):
    sc = small_scenario
    bad = type(sc)(**{**sc.__dict__, "items": sc.items.assign(item_id=sc.items["item_id"] + "\tx")})
    with pytest.raises(CrossLensError, match="tab"):
        export.export_recbole(bad, tmp_path)
    assert not list(tmp_path.iterdir())


def test_peer_lists_are_scored_like_our_models(small_scenario):
    """Lists that travel as external ids and back score exactly as evaluate() scores the model itself."""
    sc = small_scenario
    model = MODELS["pop"]()
    model.fit(sc)
    ours = evaluate.evaluate(model, sc, "test")
    warm = np.flatnonzero(sc.test.segment == "warm")
    ids = sc.items["item_id"].to_numpy()
    as_ids = [ids[row].tolist() for row in ours.top[warm]]
    as_ids[0] = as_ids[0][:5]  # a short list (items the peer cannot score) is filled, keeping what was listed
    top = peers._target_indices(sc, sc.test.subset(warm), as_ids)
    assert (top[1:] == ours.top[warm][1:]).all() and (top[0, :5] == ours.top[warm][0, :5]).all()
    assert not set(top[0]) & set(sc.test.exclude[warm[0]])
    ev = evaluate.evaluate_top(sc, sc.test.subset(warm), top)
    expected = ours.per_case.iloc[warm].reset_index(drop=True)
    assert np.allclose(ev.per_case.iloc[1:, 2:], expected.iloc[1:, 2:])
    assert ev.summary["warm"]["cases"] == len(warm) and ev.summary["cold"]["cases"] == 0


@pytest.fixture
def workspace(tmp_path, domains):
    ws = tmp_path / "ws"
    for name, (inter, items) in domains.items():
        inter.to_csv(tmp_path / f"{name}.csv", index=False)
        api.ingest(name, tmp_path / f"{name}.csv", workspace=ws)
    return ws


def test_cli_export_round_trip(workspace, tmp_path, capsys):
    run = api.train("src", "tgt", "pop", workspace=workspace)
    out = tmp_path / "out"
    assert cli.main(["export", run["id"], "--format", "recbole", "--out", str(out), "--workspace", str(workspace),
                     "--json"]) == 0
    folder = Path(json.loads(capsys.readouterr().out)["folder"])
    assert (folder / f"{folder.name}.inter").is_file() and (folder / f"{folder.name}.test.jsonl").is_file()
    for args in (["export", "no-such-run", "--out", str(out)], ["export", run["id"], "--format", "csv", "--out", str(out)]):
        assert cli.main([*args, "--workspace", str(workspace)]) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_missing_peer_venv_says_how_to_create_it(workspace, monkeypatch):
    monkeypatch.setattr(peers, "PEER_PYTHON", Path("/nonexistent/bin/python"))
    with pytest.raises(CrossLensError, match="make peers-venv"):
        peers.run_peer("src", "tgt", "sasrec", workspace=workspace)
    with pytest.raises(CrossLensError, match="unknown peer"):
        peers.run_peer("src", "tgt", "bert4rec", workspace=workspace)


@pytest.mark.skipif(not peers.PEER_PYTHON.exists(),
                    reason="needs the RecBole venv .venv-recbole (create it with `make peers-venv`)")
@pytest.mark.parametrize("model", ["sasrec", "lightgcn"])
def test_peer_runs_in_its_venv_and_pairs_with_our_runs(workspace, model):
    ours = api.train("src", "tgt", "itemknn", workspace=workspace)
    run = peers.run_peer("src", "tgt", model, workspace=workspace, settings={"epochs": 2})
    assert run["status"] == "done" and run["model"] == f"recbole-{model}"
    assert set(run["metrics"]) == {"all", "warm"} and run["config"]["peer"] == "RecBole 1.2.1"
    assert run["config"]["params"]["epochs"] == 2 and run["train_seconds"] > 0
    assert 0 <= run["metrics"]["warm"]["ndcg@10"] <= 1
    compared = api.compare(ours["id"], run["id"], workspace=workspace)
    assert set(compared["segments"]) == {"all", "warm"}
    assert compared["segments"]["warm"]["n"] == run["metrics"]["warm"]["cases"]
