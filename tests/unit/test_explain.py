"""Explanations: SHAP and LIME over what the model really sees, on models whose answer is known."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine import api, kg, scenario as scenarios
from engine.errors import CrossLensError
from engine.explain import Explainer
from engine.models import MODELS

ROOT = Path(__file__).resolve().parents[2]
TINY_LMKG = {"dim": 16, "epochs": 2, "patience": 100, "negatives": 16, "max_history": 20, "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny_lmkg(small_scenario):
    return MODELS["lmkg"](**TINY_LMKG).fit(small_scenario)


def hand_made_scenario():
    """Target item t0 is bought with source item s0 by many users, with s1 by one, never with s2; user 'ux' has
    bought s0, s1 and s2 and nothing in the target, so their history is exactly those three items."""
    baskets = {**{f"a{u}": ["s0", "t0"] for u in range(6)}, "b0": ["s1", "t0", "t1"], "b1": ["s1", "t1"],
               "b2": ["s1", "t2"], "b3": ["s2", "t1", "t2"], "b4": ["s2", "t3"], "b5": ["s0", "t3"],
               "ux": ["s0", "s1", "s2"]}
    rows = [(u, i, float(t)) for u, items in baskets.items() for t, i in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    tables = {}
    for domain in ("src", "tgt"):
        mine = inter[inter["item_id"].str[0] == domain[0]].reset_index(drop=True)
        ids = sorted(mine["item_id"].unique())
        tables[domain] = (mine, pd.DataFrame({"item_id": ids, "title": [f"item {i}" for i in ids]}))
    return scenarios.split(tables, scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.0))


def test_shap_recovers_the_exact_attributions_of_an_additive_model_and_lime_ranks_the_decisive_item_first():
    sc = hand_made_scenario()
    model = MODELS["itemknn"]().fit(sc)
    ex = Explainer(sc, model)
    result = ex.explain("ux", "t0", "both")
    t0 = ex.item_index("t0")
    history = [f["item_id"] for f in result["features"]]
    assert history == ["s0", "s1", "s2"] and result["entities"] == 0
    index = {i: n for n, i in enumerate(sc.items["item_id"])}
    # itemknn scores the sum of the history items' similarities: each item's exact Shapley value is its own term
    exact = np.array([model.similarity_[index[i], t0] for i in history])
    assert exact[0] > 2 * exact[1] > 0 and exact[2] == 0  # s0 decides, s1 helps a little, s2 not at all
    assert result["base_value"] == pytest.approx(0.0, abs=1e-9)
    assert result["score"] == pytest.approx(exact.sum(), rel=1e-5)
    assert [f["shap"] for f in result["features"]] == pytest.approx(exact.tolist(), abs=1e-5)
    assert result["shap"]["additivity_error"] < 1e-6
    lime = np.array([f["lime"] for f in result["features"]])
    assert np.argmax(lime) == 0 and lime[0] > 0
    assert result["lime"]["score"] > 0.99  # an additive model is fitted exactly by a linear surrogate
    assert result["lime"]["local_pred"] == pytest.approx(result["score"], rel=1e-2)
    assert result["agreement"] == pytest.approx(1.0)


def test_removing_a_history_position_is_scoring_the_shorter_history(small_scenario, tiny_lmkg):
    sc = small_scenario
    knn = MODELS["itemknn"]().fit(sc)
    lmkg = tiny_lmkg
    history = torch.as_tensor(sc.test.history[0][-20:])
    assert len(history) >= 4
    for model in (knn, lmkg):
        with torch.no_grad():
            model.prepare()
            full = model.score(scenarios.Batch(torch.tensor([0]), history[None]))[0]
        item = int(full.argmax())
        n_entities = getattr(model, "entity_count", lambda _: 0)(item)
        keep = torch.ones(len(history) + 1, len(history), dtype=torch.bool)
        for p in range(len(history)):
            keep[p + 1, p] = False
        scores = model.score_perturbed(history, item, keep, torch.ones(len(keep), n_entities, dtype=torch.bool))
        assert scores[0] == pytest.approx(float(full[item]), rel=1e-5, abs=1e-5), model.name
        for p in range(len(history)):
            shorter = torch.cat([history[:p], history[p + 1:]])[None]
            with torch.no_grad():
                expected = model.score(scenarios.Batch(torch.tensor([0]), shorter))[0, item]
            assert scores[p + 1] == pytest.approx(float(expected), rel=1e-5, abs=1e-5), (model.name, p)
        assert len(set(np.round(scores.numpy(), 5))) > 1  # removals do change the score


def test_removing_an_entity_changes_lmkgs_item_vector_and_labels_name_the_models_own_slots(small_scenario, tiny_lmkg):
    sc, model = small_scenario, tiny_lmkg
    item = 3
    n = model.entity_count(item)
    assert n >= 2  # a category path of two levels: 'tgt' and 'tgt > kind c'
    keep = torch.ones(n + 1, n, dtype=torch.bool)
    for e in range(n):
        keep[e + 1, e] = False
    with torch.no_grad():
        model.prepare()
        vectors = model._item_with_entities(item, keep)
        assert torch.allclose(vectors[0], model.net_.item_table[item], atol=1e-5)  # nothing removed: the same item
        for e in range(n):
            assert not torch.allclose(vectors[e + 1], vectors[0], atol=1e-4)
    history = torch.as_tensor(sc.test.history[0][-20:])
    scores = model.score_perturbed(history, item, torch.ones(n + 1, len(history), dtype=torch.bool), keep)
    assert all(abs(float(scores[e + 1] - scores[0])) > 1e-6 for e in range(n))
    # the explainer's labels are the entities in the model's slots, in slot order
    ex = Explainer(sc, model)
    graph = kg.item_graph(sc.items, sc.triples, model.params["kg_hops"])
    codes, names = pd.factorize(graph["entity"])
    slots = model.net_.knowledge.item_entities[item, :n].numpy()
    assert [e for _, e in model.entity_slots(item)] == list(names[slots])
    labels = ex.pair(sc.users[sc.test.user[0]], sc.items["item_id"].iloc[item]).labels
    assert labels[-n:] == [f"category: {e.removeprefix('category=')}" for e in names[slots]]


def test_models_without_a_history_based_score_are_refused(small_scenario):
    with pytest.raises(CrossLensError, match="cannot be explained"):
        Explainer(small_scenario, MODELS["pop"]().fit(small_scenario))


def cli(*args, workspace):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args), "--workspace", str(workspace)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_explain_round_trip_and_bad_input(tmp_path, domain_files, capsys):
    ws = tmp_path / "ws"
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=ws)
    run = api.train("src", "tgt", "itemknn", workspace=ws)["id"]
    pop = api.train("src", "tgt", "pop", workspace=ws)["id"]
    rec = api.recommend(run, "u1", k=1, workspace=ws)["recommendations"][0]["item_id"]
    result = cli("explain", run, "--user", "u1", "--item", rec, "--method", "both", "--nsamples", "200",
                 "--lime-samples", "500", "--json", workspace=ws)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["user"] == "u1" and out["item_id"] == rec and out["history_items"] > 3
    assert {"shap", "lime", "agreement", "deletion", "base_value", "score"} <= set(out)
    assert out["shap"]["additivity_error"] < 1e-6 * max(1.0, abs(out["score"]))
    assert all(f["label"].endswith(("(src)", "(tgt)")) for f in out["features"])
    assert out["deletion"]["shap"]["wins"]

    # bad input, through the same entry point in this process: exit 2, one paragraph, no traceback
    from engine.__main__ import main
    for args, problem in ((("--user", "nobody", "--item", rec), "user 'nobody'"),
                          (("--user", "u1", "--item", "no-such-item"), "item 'no-such-item'"),
                          (("--user", "u1", "--item", "src0"), "is a 'src' item")):
        assert main(["explain", run, *args, "--workspace", str(ws)]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and "Traceback" not in err
    assert main(["explain", pop, "--user", "u1", "--item", rec, "--workspace", str(ws)]) == 2
    assert "cannot be explained" in capsys.readouterr().err
