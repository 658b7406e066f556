"""The CrossLens model on a small generated two-domain dataset (real MiniLM text embeddings, real KG)."""
import numpy as np
import pytest
import torch

from engine import evaluate, scenario as scenarios
from engine.models import MODELS

SMALL = {"dim": 32, "epochs": 60, "patience": 100, "batch_size": 32, "negatives": 32, "max_history": 20, "lr": 0.003,
         "temperature": 0.1, "dropout": 0.0, "id_dropout": 0.0}


@pytest.fixture(scope="module")
def lmkg(small_scenario):
    return MODELS["lmkg"](**SMALL).fit(small_scenario)


def test_beats_pop_on_warm_and_cold_users(lmkg, small_scenario):
    ours = evaluate.evaluate(lmkg, small_scenario).summary
    pop = evaluate.evaluate(MODELS["pop"]().fit(small_scenario), small_scenario).summary
    for segment in ("warm", "cold"):
        assert ours[segment]["ndcg@10"] > pop[segment]["ndcg@10"], (segment, ours[segment], pop[segment])


def test_cold_user_with_only_source_history_gets_target_recommendations(lmkg, small_scenario):
    sc = small_scenario
    source_only = torch.as_tensor(np.arange(sc.n_target, sc.n_target + 5))[None]  # five source items
    scores = lmkg.score(scenarios.Batch(torch.tensor([0]), source_only))
    assert scores.shape == (1, sc.n_target) and torch.isfinite(scores).all()
    assert scores.std() > 0  # a real ranking, not a constant


def test_history_changes_the_ranking(lmkg, small_scenario):
    sc = small_scenario
    a = lmkg.score(scenarios.Batch(torch.tensor([0]), torch.tensor([[sc.n_target]])))
    b = lmkg.score(scenarios.Batch(torch.tensor([0]), torch.tensor([[sc.n_target + 1]])))
    assert not torch.allclose(a, b)


def test_save_load_gives_identical_scores(lmkg, small_scenario):
    again = MODELS["lmkg"].from_state(lmkg.params, small_scenario, {k: v.clone() for k, v in lmkg.state().items()})
    batch = small_scenario.batch(small_scenario.test, np.arange(len(small_scenario.test)), max_history=20)
    with torch.no_grad():
        lmkg.prepare()
        assert torch.equal(lmkg.score(batch), again.score(batch))
    assert "text" not in lmkg.state()  # frozen text vectors come back from the cache, not the weights file


@pytest.mark.parametrize("ablation", ["use_text", "use_kg", "use_source"])
def test_ablations_train(ablation, small_scenario):
    model = MODELS["lmkg"](**{**SMALL, "epochs": 2, ablation: False}).fit(small_scenario)
    summary = evaluate.evaluate(model, small_scenario).summary
    assert 0 <= summary["all"]["ndcg@10"] <= 1


def test_long_histories_keep_their_most_recent_items(lmkg, small_scenario):
    # a batch padded wider than max_history must not leave short rows with an empty history
    sc = small_scenario
    short = torch.tensor([[sc.n_target, sc.n_target + 1] + [-1] * 40])
    alone = torch.tensor([[sc.n_target, sc.n_target + 1]])
    with torch.no_grad():
        assert torch.allclose(lmkg.score(scenarios.Batch(torch.tensor([0]), short)),
                              lmkg.score(scenarios.Batch(torch.tensor([0]), alone)), atol=1e-6)
