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


def test_item_representations_are_kept_while_the_weights_stay_fixed(lmkg, small_scenario):
    net = lmkg.net_
    with torch.no_grad():
        lmkg.prepare()
        table = net.item_table
        net.eval()
        lmkg.prepare()
        assert net.item_table is not None and torch.equal(net.item_table, table)  # eval() keeps them
        net.load_state_dict(net.state_dict())
        assert net.item_table is None  # new weights: computed afresh at the next scoring
        net.train()
        net.eval()
        lmkg.prepare()
        assert torch.allclose(net.item_table, table)


def test_sparse_collaborative_channel_is_the_scaled_co_occurrence_score(lmkg, small_scenario):
    from engine.models import itemknn
    history = small_scenario.batch(small_scenario.test, np.arange(40), max_history=20).history
    with torch.no_grad():
        lmkg.prepare()
        network, cf, cold = lmkg._channels(history)
        dense = itemknn.history_scores(history, lmkg.cf_)
        users = torch.nn.functional.normalize(lmkg._user_rows(history), dim=-1)
        std = lmkg._network_std(users)
        scaled = torch.from_numpy(cf.toarray())
        reached = dense.max(1).values > 0
        # each row is the co-occurrence score rescaled so that its best item is worth one network std
        assert torch.allclose(scaled[reached], dense[reached] * (std / dense.max(1).values)[reached, None], atol=1e-5)
        assert torch.allclose(scaled.max(1).values[reached], std[reached], rtol=1e-5)
        expected = network + lmkg.cf_weights_[cold.long()][:, None] * scaled
        assert torch.allclose(lmkg.score(scenarios.Batch(torch.zeros(40, dtype=torch.long), history)), expected,
                              atol=1e-5)


def test_collaborative_channel_weight_is_chosen_on_validation(lmkg, small_scenario):
    from engine.models.lmkg import CF_WEIGHTS
    assert lmkg.cf_ is not None and lmkg.cf_.shape == (small_scenario.n_items, small_scenario.n_target)
    assert all(float(w) in CF_WEIGHTS for w in lmkg.cf_weights_)  # one weight for warm, one for cold users
    # the channel really enters the score: a different weight gives different scores
    batch = small_scenario.batch(small_scenario.test, np.arange(8), max_history=20)
    with torch.no_grad():
        before = lmkg.score(batch)
        saved, lmkg.cf_weights_ = lmkg.cf_weights_, lmkg.cf_weights_ + 1.0
        after = lmkg.score(batch)
        lmkg.cf_weights_ = saved
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("ablation", ["use_text", "use_kg", "use_source", "use_cf"])
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


def test_cold_start_windows_pair_source_history_with_the_users_own_target_items(small_scenario):
    from engine.models.lmkg import _with_one_of, cold_start_windows
    sc = small_scenario
    prefixes, targets = cold_start_windows(sc, 20)
    assert len(prefixes) == len(targets) > 0
    windows = _with_one_of(prefixes, targets, np.random.default_rng(0))
    train = sc.train
    for window, own in zip(windows, targets):
        items = window[window >= 0]
        assert (items[:-1] >= sc.n_target).all()  # source items only before the last position...
        assert items[-1] in own and items[-1] < sc.n_target  # ...then one of this user's training target items
    cold = np.unique(sc.test.user[sc.test.segment == "cold"])
    seen = set(train.loc[train["domain"] == 0, "item"])
    assert all(set(t) <= seen for t in targets)  # nothing held out: cold users have no target training items
    assert not np.isin(cold, train.loc[train["domain"] == 0, "user"]).any()
