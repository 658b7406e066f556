"""Explanations in words: the item's rank, a summary naming its top features, SHAP-LIME sign disagreements, and a
counterfactual that really drops the item out of the top K when re-scored."""
import numpy as np
import pytest
import torch

from engine import api
from engine.explain_words import disagreements, summary
from engine.scenario import Batch


def rescored_rank(run, user: str, item: str, removed_items: list[str]) -> int:
    """The item's rank for the user's explained history without `removed_items`, scored apart from the explainer:
    from the run's own recommend() path (the user's case, masked known items)."""
    sc = run.sc
    case = sc.user_case(sc.user(user))
    history = run.model.read_history(case.history)
    ids = sc.items["item_id"].to_numpy()
    kept = np.array([i for i in history if ids[i] not in removed_items], dtype=np.int64)
    with torch.no_grad():
        scores = run.model.score(Batch(torch.tensor([case.user]), torch.as_tensor(kept if len(kept) else [-1])[None]))
    scores = scores.float()[0]
    scores[torch.as_tensor(case.exclude, dtype=torch.long)] = -torch.inf
    position = int(np.flatnonzero(ids[: sc.n_target] == item)[0])
    return int((scores > scores[position]).sum()) + 1


@pytest.mark.parametrize("model", ["itemknn", "lmkg"])
def test_a_top_recommendation_is_explained_in_words_with_a_counterfactual_that_holds(trained_workspace, model):
    ws, runs = trained_workspace
    run = api.LoadedRun(runs[model]["id"], ws)
    found = 0
    for user in api.test_users(runs[model]["id"], workspace=ws)[:8]:
        item = run.recommend(user, 1)["recommendations"][0]["item_id"]
        result = run.explain(user, item, "both")
        assert result["rank"] == 1 and result["candidates"] > 1
        features = result["features"]
        top = max(features, key=lambda f: f["shap"])
        assert top["label"] in result["summary"] and result["summary"].startswith(f"'{result['title']}' ranks 1 of")
        counter = result["counterfactual"]
        if counter is None:
            continue
        found += 1
        removed = [features[p]["item_id"] for p in counter["positions"]]
        assert counter["verified"] and rescored_rank(run, user, item, removed) == counter["rank_after"] > counter["k"]
        for kept in removed:  # none is needless: with it back, the item is in the top K again
            assert rescored_rank(run, user, item, [r for r in removed if r != kept]) <= counter["k"]
        assert "would drop to rank" in result["summary"]
    assert found >= 2, "histories of test users should usually be able to push a top item out of the top 10"


def test_sign_disagreements_ignore_negligible_attributions():
    shap = np.array([0.5, -0.2, 0.001, 0.3])
    lime = np.array([0.4, 0.1, -0.3, -0.2])
    assert disagreements(shap, lime).tolist() == [False, True, False, True]  # 0.001 is no sign against 0.5


def test_a_summary_names_what_pushes_up_and_what_counts_against():
    text = summary("Pens", "office", 3, 201, ["Ink (arts)", "brand: Pilot", "Paper (office)"],
                   ["history", "entity", "history"], np.array([0.4, 0.2, -0.1]), "shap",
                   {"k": 10, "positions": [0], "rank_after": 14})
    assert text == ("'Pens' ranks 3 of 201 office items (top 1.5 %); SHAP credits mostly the history item Ink (arts) "
                    "and the item's brand: Pilot, while the history item Paper (office) counts against it. Without "
                    "Ink (arts) in the history it would drop to rank 14, out of the top 10.")
