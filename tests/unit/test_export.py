"""RecBole export and peers: the exported files are exactly the scenario's training data (target only, or every
domain) and its test cases, a peer's ranked lists are scored by our own metric code, and the runner stops training
by its rule."""
import csv
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from engine import __main__ as cli
from engine import api, evaluate, export, jobs, peers
from engine import scenario as scenarios
from engine.errors import CrossLensError
from engine.models import MODELS

needs_peer_venv = pytest.mark.skipif(not peers.PEER_PYTHON.exists(),
                                     reason="needs the RecBole venv .venv-recbole (create it with `make peers-venv`)")


def read_inter(folder: Path) -> tuple[list[str], list[tuple]]:
    with open(folder / f"{folder.name}.inter", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [(u, i, float(t)) for u, i, t in rows[1:]]


def read_cases(folder: Path) -> list[dict]:
    return [json.loads(line) for line in open(folder / f"{folder.name}.test.jsonl", encoding="utf-8")]


def read_targets(folder: Path) -> list[str]:
    return (folder / f"{folder.name}.targets.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def exported(small_scenario, tmp_path_factory):
    return export.export_recbole(small_scenario, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported_mixed(small_scenario, tmp_path_factory):
    return export.export_recbole(small_scenario, tmp_path_factory.mktemp("export-mixed"), mixed=True)


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


def test_targets_file_lists_every_target_item(small_scenario, exported):
    sc = small_scenario
    assert read_targets(exported) == sc.items["item_id"].iloc[: sc.n_target].tolist()


def test_mixed_inter_file_is_every_domains_training_data(small_scenario, exported_mixed):
    sc = small_scenario
    _, rows = read_inter(exported_mixed)
    tokens = sc.items["domain"] + ":" + sc.items["item_id"]
    assert rows == list(zip(sc.users[sc.train["user"]], tokens.to_numpy()[sc.train["item"]], sc.train["timestamp"]))
    assert {i.split(":")[0] for _, i, _ in rows} == {"src", "tgt"}
    for user in sc.users[:20]:  # each user's sequence in time order
        times = [t for u, _, t in rows if u == user]
        assert times == sorted(times)


def test_mixed_export_holds_no_validation_or_test_interaction(small_scenario, exported_mixed, domains):
    sc = small_scenario
    _, rows = read_inter(exported_mixed)
    trained = {(u, i, t) for u, i, t in rows}
    target = domains["tgt"][0]
    held_out = {(u, f"tgt:{i}", t) for u, i, t in target.itertuples(index=False)} - trained
    n_held_out = 0
    for cases in (sc.valid, sc.test):
        for row in range(len(cases)):
            user = sc.users[cases.user[row]]
            relevant = {f"tgt:{i}" for i in sc.items["item_id"].to_numpy()[cases.relevant[row]]}
            assert not any(u == user and i in relevant for u, i, _ in trained & held_out)
            n_held_out += cases.segment[row] == "warm"
    cold = set(sc.users[np.concatenate([c.user[c.segment == "cold"] for c in (sc.valid, sc.test)])])
    assert not any(u in cold and i.startswith("tgt:") for u, i, _ in rows)  # cold users: source rows only
    assert any(u in cold for u, _, _ in rows)
    n_cold_target = target["user_id"].isin(cold).sum()
    assert len(rows) == sum(len(t[0]) for t in domains.values()) - n_held_out - n_cold_target


def test_mixed_cases_are_every_test_case_with_its_whole_history(small_scenario, exported_mixed, domains):
    sc, cases = small_scenario, read_cases(exported_mixed)
    tokens = (sc.items["domain"] + ":" + sc.items["item_id"]).to_numpy()
    assert [c["case"] for c in cases] == list(range(len(sc.test)))
    for c in cases:
        row = c["case"]
        assert c["user_id"] == sc.users[sc.test.user[row]]
        assert c["history"] == tokens[sc.test.history[row]].tolist()
        assert c["exclude"] == tokens[sc.test.exclude[row]].tolist()
        assert c["relevant"] == tokens[sc.test.relevant[row]].tolist()
        assert all(i.startswith("tgt:") for i in c["exclude"] + c["relevant"])
    cold = [c for c in cases if sc.test.segment[c["case"]] == "cold"]
    assert cold and all(c["history"] and all(i.startswith("src:") for i in c["history"]) and not c["exclude"]
                        for c in cold)
    # A warm case's history is everything the user did, in any domain, strictly before the held-out item.
    log = pd_concat_log(domains)
    for c in [c for c in cases if sc.test.segment[c["case"]] == "warm"][:25]:
        mine = log[log["user_id"] == c["user_id"]]
        cutoff = mine.loc[mine["token"] == c["relevant"][0], "timestamp"].max()
        assert c["history"] == mine.loc[mine["timestamp"] < cutoff, "token"].tolist()
    assert any(any(i.startswith("src:") for i in c["history"]) for c in cases if c not in cold)


def pd_concat_log(domains):
    """Every domain's raw interactions with mixed-view item ids, in time order (the generated data has no ties)."""
    import pandas as pd
    log = pd.concat([inter.assign(token=name + ":" + inter["item_id"]) for name, (inter, _) in domains.items()])
    return log.sort_values("timestamp", kind="stable")


def test_mixed_item_ids_are_unique_across_domains(domains, tmp_path):
    """Two domains using the same item ids still export as distinct items."""
    same = {"src": (domains["src"][0].assign(item_id=lambda d: d["item_id"].str.replace("src", "x")),
                    domains["src"][1].assign(item_id=lambda d: d["item_id"].str.replace("src", "x"))),
            "tgt": (domains["tgt"][0].assign(item_id=lambda d: d["item_id"].str.replace("tgt", "x")),
                    domains["tgt"][1].assign(item_id=lambda d: d["item_id"].str.replace("tgt", "x")))}
    sc = scenarios.split(same, scenarios.scenario_spec(["src"], "tgt"))
    assert len(set(sc.items["item_id"])) < sc.n_items  # the ids do collide
    tokens = export.item_tokens(sc, mixed=True)
    assert len(set(tokens)) == sc.n_items
    folder = export.export_recbole(sc, tmp_path, mixed=True)
    assert folder.name.endswith("_mixed")
    assert read_targets(folder) == tokens[: sc.n_target].tolist()
    assert all(t.startswith("tgt:") for t in read_targets(folder))
    _, rows = read_inter(folder)
    assert len({i for _, i, _ in rows}) == len(np.unique(sc.train["item"]))


def test_mixed_peer_lists_are_scored_on_every_case(small_scenario):
    """Mixed-view ids map back to our target items, and cold cases are scored too."""
    sc = small_scenario
    model = MODELS["pop"]()
    model.fit(sc)
    ours = evaluate.evaluate(model, sc, "test")
    tokens = export.item_tokens(sc, mixed=True)
    top = peers._target_indices(sc, sc.test, [tokens[row].tolist() for row in ours.top], mixed=True)
    assert (top == ours.top[:, : evaluate.TOP]).all()
    ev = evaluate.evaluate_top(sc, sc.test, top)
    assert ev.summary["cold"]["cases"] == (sc.test.segment == "cold").sum() > 0
    assert np.isclose(ev.summary["cold"]["ndcg@10"], ours.summary["cold"]["ndcg@10"])


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
    numbers = ev.per_case.select_dtypes("number").columns  # the metrics (and other per-case figures)
    assert np.allclose(ev.per_case[numbers].iloc[1:], expected[numbers].iloc[1:])
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
    with pytest.raises(CrossLensError, match="make peers-venv"):  # before any job exists
        jobs.start_peer("src", "tgt", "sasrec-mixed", workspace=workspace)
    assert not jobs.jobs(workspace)
    with pytest.raises(CrossLensError, match="unknown peer"):
        peers.run_peer("src", "tgt", "bert4rec", workspace=workspace)


def test_progress_is_the_nearer_of_epoch_limit_and_time_budget():
    line = {"epoch": 3, "epochs": 300, "seconds": 1800.0, "time_budget": 3600}
    assert peers._fraction(line) == 0.5
    assert peers._fraction({**line, "time_budget": 0}) == 0.01
    assert peers._fraction({**line, "epoch": 300, "seconds": 7200.0}) == 1.0


def load_runner():
    """peers/recbole_runner.py imports RecBole only inside run(), so its pure parts load in our venv."""
    spec = importlib.util.spec_from_file_location("recbole_runner", peers.RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_stops_by_patience_epoch_limit_or_time_budget():
    stop = load_runner().stop_reason
    rising = [0.1, 0.2, 0.3]
    assert stop(rising, epoch=3, epochs=300, elapsed=10, budget=3600, patience=2) is None
    assert stop([0.3, 0.2, 0.25], epoch=3, epochs=300, elapsed=10, budget=3600, patience=2) == "early stopping"
    assert stop([0.3, 0.2], epoch=2, epochs=300, elapsed=10, budget=3600, patience=2) is None
    assert stop([0.3, 0.3, 0.3], epoch=3, epochs=300, elapsed=10, budget=3600, patience=2) == "early stopping"
    assert stop(rising, epoch=300, epochs=300, elapsed=10, budget=3600, patience=2) == "epoch limit"
    assert stop(rising, epoch=3, epochs=300, elapsed=3600, budget=3600, patience=2) == "time budget"
    assert stop(rising, epoch=3, epochs=300, elapsed=1e9, budget=0, patience=2) is None  # 0: no budget
    # Several at once: converged is the truest reason.
    assert stop([0.3, 0.2, 0.1], epoch=300, epochs=300, elapsed=1e9, budget=1, patience=2) == "early stopping"


def test_runner_defaults_train_to_convergence_within_a_time_budget():
    runner = load_runner()
    sasrec, lightgcn = runner.settings_for("SASRec", 0, {}), runner.settings_for("LightGCN", 0, {})
    assert (sasrec["epochs"], sasrec["stopping_step"], sasrec["eval_step"]) == (300, 5, 1)
    assert (lightgcn["epochs"], lightgcn["stopping_step"], lightgcn["eval_step"]) == (1000, 10, 5)
    assert sasrec["time_budget"] == lightgcn["time_budget"] == 3600
    assert runner.settings_for("LightGCN", 1, {"epochs": 2, "time_budget": 60})["eval_step"] == 2
    with pytest.raises(SystemExit, match="stopping_step"):
        runner.settings_for("SASRec", 0, {"stopping_step": 0})


@needs_peer_venv
@pytest.mark.parametrize("model, settings, stopped, epochs_run", [
    ("sasrec", {"epochs": 2}, "epoch limit", 2),
    ("lightgcn", {"epochs": 2}, "epoch limit", 2),
    ("sasrec-mixed", {"epochs": 50, "time_budget": 0.001}, "time budget", 1),  # over budget at the first validation
])
def test_peer_runs_in_its_venv_and_pairs_with_our_runs(workspace, model, settings, stopped, epochs_run):
    ours = api.train("src", "tgt", "itemknn", workspace=workspace)
    run = peers.run_peer("src", "tgt", model, workspace=workspace, settings={**settings, "threads": 1})
    assert run["status"] == "done" and run["model"] == f"recbole-{model}"
    config = run["config"]
    assert config["peer"] == "RecBole 1.2.1"
    assert {k: config["params"][k] for k in settings} == settings  # the caller's settings win over the defaults
    assert (config["stop_reason"], config["epochs_run"]) == (stopped, epochs_run)
    validated = [e for e, _ in config["valid_ndcg@10_per_epoch"]]
    assert validated[-1] == epochs_run and config["best_epoch"] in validated
    assert run["train_seconds"] > 0 and 0 <= run["metrics"]["warm"]["ndcg@10"] <= 1
    mixed = model in peers.MIXED
    assert {"all", "warm"} <= set(run["metrics"]) and ("cold" in run["metrics"]) == mixed
    compared = api.compare(ours["id"], run["id"], workspace=workspace)
    assert compared["segments"]["warm"]["n"] == run["metrics"]["warm"]["cases"]
    if mixed:  # cold users are served from their source history, and pair with ours
        assert run["metrics"]["cold"]["cases"] == ours["metrics"]["cold"]["cases"] > 0
        assert compared["segments"]["cold"]["n"] == run["metrics"]["cold"]["cases"]
        assert config["unscored_target_items"] == 0 and config["empty_histories"] == 0
    else:
        assert "cold" not in compared["segments"]


@needs_peer_venv
def test_peer_runs_as_a_background_job(workspace):
    job = jobs.start_peer("src", "tgt", "lightgcn", settings={"epochs": 1, "threads": 1}, workspace=workspace)
    assert job["spec"]["kind"] == "peer" and job["spec"]["model"] == "recbole-lightgcn"
    deadline = time.time() + 300
    while jobs.job(job["id"], workspace)["status"] in ("starting", "running") and time.time() < deadline:
        time.sleep(0.5)
    done = jobs.job(job["id"], workspace)
    assert done["status"] == "done", jobs.log_tail(job["id"], workspace)
    run = api.run(done["run_id"], workspace)
    assert run["model"] == "recbole-lightgcn" and run["config"]["epochs_run"] == 1
    assert jobs.curves(job["id"], workspace)["valid_ndcg@10"].notna().all()
