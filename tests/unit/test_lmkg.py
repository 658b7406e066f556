"""The CrossLens model on a small generated two-domain dataset (real MiniLM text embeddings, real KG)."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from engine import evaluate, scenario as scenarios
from engine.models import MODELS
from engine.train import AdamWithSparseTables

SMALL = {"dim": 32, "epochs": 60, "patience": 100, "batch_size": 32, "negatives": 32, "max_history": 20, "lr": 0.003,
         "temperature": 0.1, "dropout": 0.0}


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


@pytest.mark.parametrize("text_view", [0.0, 1.0])
def test_score_is_the_network_plus_the_offset_the_co_occurrence_and_the_text_channel(lmkg, small_scenario, text_view):
    from engine.models import itemknn
    from engine.models.lmkg import calibration, windows
    sc = small_scenario
    rows = np.r_[0:30, len(sc.test) - 10:len(sc.test)]
    history = sc.batch(sc.test, rows, max_history=20).history
    assert {"warm", "cold"} <= set(sc.test.segment[rows])  # a block of both: the text channel's product per segment
    chosen = lmkg.calibration_[True].clone()
    lmkg.calibration_[True][0, calibration.COLUMNS.index("text_view")] = text_view  # warm rows: as if so calibrated
    lmkg.calibration_[True][:, calibration.COLUMNS.index("text")] = torch.tensor([1.0, 2.0])  # the channel in use
    with torch.no_grad():
        lmkg.prepare()
        visible = lmkg.visible(history)
        mixed, target = lmkg.views(visible)
        gate, weight, offset, text_weight, view = lmkg._settings(visible)
        users = torch.nn.functional.normalize((1 - gate[:, None]) * mixed + gate[:, None] * target, dim=-1)
        network = users @ lmkg.target_items_.T / lmkg.params["temperature"] + lmkg.target_bias_
        std = network.std(1)
        assert torch.allclose(lmkg._network_std(users), std, rtol=1e-4)  # the moments give the exact std
        dense = itemknn.history_scores(visible, lmkg.cf_)
        top = dense.max(1).values.clamp(min=1e-6)
        new = ~lmkg.net_.known[: sc.n_target]
        read = torch.where(view[:, None] > 0, windows.target_only(visible, sc.n_target), visible)
        assert (view > 0).any() == bool(text_view)  # the warm rows' text channel reads their target items alone
        text = lmkg.semantic_.score(scenarios.Batch(torch.zeros(40, dtype=torch.long), read))
        expected = network + (offset * std)[:, None] * new + (weight * std)[:, None] * dense / top[:, None] \
            + (text_weight * std)[:, None] * text
        scores = lmkg.score(scenarios.Batch(torch.zeros(40, dtype=torch.long), history))
    lmkg.calibration_[True] = chosen
    assert torch.allclose(scores, expected, atol=1e-4)


def test_calibration_is_chosen_on_validation_cases_only(lmkg, small_scenario):
    from engine.models.lmkg import calibration
    sc = small_scenario
    for use_cf, table in lmkg.calibration_.items():
        assert table.shape == (2, len(calibration.COLUMNS))
        for gate, cf, new, text, view in table.tolist():
            assert gate in calibration.GATES and new in calibration.NEW_OFFSETS and text in calibration.TEXT_WEIGHTS
            assert cf in (calibration.CF_WEIGHTS if use_cf else (0.0,)) and view in calibration.TEXT_VIEWS
        assert table[1, calibration.COLUMNS.index("text_view")] == 0  # a cold user has no target item to read
    # a calibration stored before the text view existed loads as the whole-history channel it was made with
    assert torch.equal(calibration.completed(table[:, :4]), torch.cat([table[:, :4], torch.zeros(2, 1)], 1))
    # the test cases play no part: calibrating on a scenario whose test cases are gone gives the same choice
    blind = copy.copy(sc)
    blind.test = sc.test.subset(np.zeros(0, dtype=np.int64))
    with torch.no_grad():
        assert torch.equal(calibration.calibrate(lmkg, blind, use_cf=True), lmkg.calibration_[True])
    # ...and the validation cases do: without them nothing is chosen (the network as trained)
    blind.valid = sc.valid.subset(np.zeros(0, dtype=np.int64))
    with torch.no_grad():
        assert not calibration.calibrate(lmkg, blind, use_cf=True).any()


def test_the_text_channels_entity_weight_is_chosen_again_by_the_fused_model(lmkg, small_scenario):
    """content picks its entity weight for content alone; inside lmkg the weight is picked again by the fused
    model's validation NDCG@10 (beside the network and the co-occurrence channel the attribute match can hurt)."""
    from engine.models.lmkg import calibration
    sc = small_scenario
    grid = lmkg.semantic_.entity_weights()
    assert len(grid) > 1  # the small data has attribute entities
    cases = sc.valid.subset(np.flatnonzero(sc.valid.segment == "warm"))
    setting = dict(zip(calibration.COLUMNS, lmkg.calibration_[True][0].tolist()))
    chosen = lmkg.semantic_.chosen_["warm"]
    kept, totals = chosen["entity_weight"], {}
    with torch.no_grad():
        for weight in grid:
            chosen["entity_weight"] = weight
            views = calibration._views(lmkg, sc, cases, True, True)
            totals[weight] = calibration._ndcg_totals(lmkg, cases, views, setting, "gate", (setting["gate"],))[0]
        calibration._choose_entity_weight(lmkg, sc, cases, True, True, setting, "warm", grid)
    best, chosen["entity_weight"] = chosen["entity_weight"], kept
    assert totals[best] == pytest.approx(max(totals.values())), totals
    assert len(set(totals.values())) > 1  # the weight changes what the fused model ranks


def test_switching_the_collaborative_channel_on_a_trained_model_recalibrates(lmkg, small_scenario):
    """What api.derive does: reload the weights with use_cf changed. Off: the stored cf channel is dropped and a
    calibration without it is chosen on validation; back on: the channel is refitted and scores as before."""
    from engine.models.lmkg import calibration
    sc = small_scenario
    off = MODELS["lmkg"].from_state({**lmkg.params, "use_cf": False}, sc, lmkg.state())
    assert off.cf_ is None
    assert not off.calibration_[False][:, calibration.COLUMNS.index("cf")].any()
    with torch.no_grad():
        assert torch.equal(off.calibration_[False], calibration.calibrate(lmkg, sc, use_cf=False))
    on = MODELS["lmkg"].from_state({**lmkg.params, "use_cf": True}, sc, off.state())
    assert on.cf_ is not None and torch.equal(on.calibration_[True], lmkg.calibration_[True])
    history = torch.as_tensor(sc.valid.history.padded(np.arange(8)))
    batch = scenarios.Batch(torch.zeros(8, dtype=torch.long), history)
    assert torch.allclose(on.score(batch), lmkg.score(batch), atol=1e-5)


@pytest.fixture(scope="module")
def new_item_model():
    sc = new_item_scenario()
    return sc, MODELS["lmkg"](**{**SMALL, "epochs": 30}).fit(sc)


def test_a_new_item_with_text_close_to_the_history_reaches_the_top_10(new_item_model):
    """Target item 'fresh' has no training interaction at all; its title matches what one user keeps buying."""
    sc, model = new_item_model
    fresh = int(np.flatnonzero(sc.items["item_id"].to_numpy()[: sc.n_target] == "fresh")[0])
    assert not bool(model.net_.known[fresh])
    liked = sc.items["title"].str.contains("watercolour") & (sc.items["item_id"] != "fresh")
    history = torch.as_tensor(np.flatnonzero(liked.to_numpy()))
    with torch.no_grad():
        scores = model.score(scenarios.Batch(torch.tensor([0]), history[None]))[0]
    scores[history[history < sc.n_target]] = -torch.inf  # known items are never recommended (as recommend() does)
    assert fresh in scores.topk(10).indices.tolist()


def test_new_items_replaces_the_chosen_new_item_offset_on_a_trained_run_or_in_training(new_item_model):
    """new_items moves every never-bought item by the same number of network standard deviations instead of the
    offset validation chose; nothing else changes, so a trained run derived with it scores as a run trained with it."""
    from engine.models.lmkg import calibration
    sc, model = new_item_model
    never = ~model.net_.known[: sc.n_target]

    def share_of_new_items(m):
        top, _ = evaluate.rank(m, sc, sc.test)
        return never.numpy()[top[:, :10]].mean()

    up = MODELS["lmkg"].from_state({**model.params, "new_items": 5.0}, sc, model.state())
    down = MODELS["lmkg"].from_state({**model.params, "new_items": -5.0}, sc, model.state())
    assert torch.equal(up.calibration_[True], model.calibration_[True])  # nothing is chosen again
    assert share_of_new_items(up) > share_of_new_items(model) >= share_of_new_items(down)
    batch = scenarios.Batch(torch.zeros(16, dtype=torch.long), torch.as_tensor(sc.test.history.padded(np.arange(16))))
    moved = up.score(batch) - model.score(batch)
    assert torch.allclose(moved[:, ~never], torch.zeros(()), atol=1e-4)
    assert max(calibration.NEW_OFFSETS) < 5 and bool((moved[:, never] > 0).all())  # above any offset chosen
    trained = MODELS["lmkg"](**{**SMALL, "epochs": 30, "new_items": 5.0}).fit(sc)
    assert torch.equal(trained.calibration_[True], model.calibration_[True])
    assert torch.allclose(trained.score(batch), up.score(batch), atol=1e-5)
    with pytest.raises(ValueError, match="new_items must be at least -10 and at most 10"):
        MODELS["lmkg"](new_items=11.0)


def new_item_scenario():
    """Two domains with ten themes of items each; users buy within one theme. One target item, 'fresh', is a
    watercolour item nobody bought. Every theme also has a new edition that a quarter of its users buy as their
    validation item (and nobody in training): the validation cases show that new items do get bought, which is what
    calibration needs to see before it lets the text reach them (on validation without one it rightly may not)."""
    rng = np.random.default_rng(1)
    themes = ["watercolour paint set", "fountain pen ink", "stapler heavy duty", "sticky notes yellow",
              "sketch pencil graphite", "printer paper ream", "oil pastel crayons", "desk organiser tray",
              "acrylic brush set", "label maker tape"]
    tables = {}
    for domain in ("src", "tgt"):
        items = pd.DataFrame({"item_id": [f"{domain}{t}_{k}" for t in range(10) for k in range(6)],
                              "title": [f"{themes[t]} model {k} ({domain})" for t in range(10) for k in range(6)]})
        if domain == "tgt":
            items.loc[len(items)] = ["fresh", "watercolour paint set deluxe (tgt)"]
            for t in range(10):
                items.loc[len(items)] = [f"tgt{t}_new", f"{themes[t]} new edition (tgt)"]
        rows = []
        for u in range(200):
            theme = u % 10
            picks = [f"{domain}{theme}_{k}" for k in rng.permutation(6)[:4]]
            if domain == "tgt" and u % 4 == 0:
                picks[2] = f"tgt{theme}_new"  # the second-to-last target item: held out for validation
            for step, item in enumerate(picks):
                rows.append((f"u{u}", item, float(2 * step + (domain == "tgt"))))
        tables[domain] = (pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)
    return scenarios.split(tables, scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=0.2))


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
    from engine.models.lmkg.windows import cold_start_windows, with_one_of
    sc = small_scenario
    prefixes, targets = cold_start_windows(sc, 20)
    assert len(prefixes) == len(targets) > 0
    windows = with_one_of(prefixes, targets, np.random.default_rng(0))
    train = sc.train
    for window, own in zip(windows, targets):
        items = window[window >= 0]
        assert (items[:-1] >= sc.n_target).all()  # source items only before the last position...
        assert items[-1] in own and items[-1] < sc.n_target  # ...then one of this user's training target items
    cold = np.unique(sc.test.user[sc.test.segment == "cold"])
    seen = set(train.loc[train["domain"] == 0, "item"])
    assert all(set(t) <= seen for t in targets)  # nothing held out: cold users have no target training items
    assert not np.isin(cold, train.loc[train["domain"] == 0, "user"]).any()


def test_a_step_moves_only_the_table_rows_its_batch_read_and_every_layer(lmkg):
    """lmkg's item and entity tables give sparse gradients and AdamWithSparseTables updates only the rows a step
    read (a dense update of every row made training grow with items x interactions); the layers update as AdamW
    updates them."""
    net = lmkg.net_
    assert net.ids.sparse and net.bias.sparse and net.knowledge.entities.sparse
    table, layer = torch.nn.Embedding(6, 3, sparse=True), torch.nn.Linear(3, 1)
    module = torch.nn.ModuleDict({"table": table, "layer": layer})
    before = [p.detach().clone() for p in module.parameters()]
    optimiser = AdamWithSparseTables(module, lr=0.1, weight_decay=0.01)
    optimiser.zero_grad()
    layer(table(torch.tensor([1, 3]))).sum().backward()
    optimiser.step()
    moved = (table.weight != before[0]).any(1)
    assert moved.tolist() == [False, True, False, True, False, False]
    assert all((p != b).all() for p, b in zip(list(module.parameters())[1:], before[1:]))


def test_a_scored_state_is_the_encoders_at_each_historys_last_item(lmkg, small_scenario):
    """Scoring computes the last layer at each history's last item only; that state is encode's there."""
    net, n = lmkg.net_, small_scenario.n_items
    lengths = torch.tensor([1, 2, 7, 20, 13])
    history = torch.randint(0, n, (len(lengths), 20), generator=torch.Generator().manual_seed(0))
    history[torch.arange(20)[None, :] >= lengths[:, None]] = -1
    with torch.no_grad():
        full = net.encode(history)[torch.arange(len(lengths)), lengths - 1]
        assert torch.allclose(net.last_states(history), full, atol=1e-5)


def test_a_long_epoch_is_validated_in_equal_parts_and_patience_counts_validations(small_scenario):
    once = MODELS["lmkg"](**{**SMALL, "epochs": 1, "valid_every": 10**6}).fit(small_scenario)
    assert [row["epoch"] for row in once.log_["epochs"]] == [1]  # an epoch within valid_every: one validation
    model = MODELS["lmkg"](**{**SMALL, "epochs": 2, "patience": 3, "valid_every": 3}).fit(small_scenario)
    log = model.log_["epochs"]
    parts = sum(row["epoch"] <= 1 for row in log)
    assert parts > 1 and [row["epoch"] for row in log[:parts]] == [round(p / parts, 3) for p in range(1, parts + 1)]
    curve = [row["valid_ndcg@10"] for row in log]
    since_best = [i - int(np.argmax(curve[: i + 1])) for i in range(len(curve))]
    # it stops at the third validation in a row without a better NDCG, or after its two epochs
    assert since_best.index(3) == len(log) - 1 if 3 in since_best else log[-1]["epoch"] == 2


def test_the_gradient_of_items_read_many_times_is_the_same_on_every_run(lmkg, small_scenario):
    """A batch reads its items many times (every history position, every candidate). The backward of plain indexing
    adds those rows in an order that depends on thread timing on the CPU, so two trainings of one seed on the shipped
    data drifted apart from the first epoch; the network gathers with index_select, whose backward adds in order."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = lmkg._net(small_scenario, lmkg._text(small_scenario)).train()
        generator = torch.Generator().manual_seed(0)
        idx = torch.randint(0, small_scenario.n_items, (2000, 100), generator=generator)
        weights = torch.randn(2000, 100, lmkg.params["dim"], generator=generator)
        grads = []
        for _ in range(3):
            net.zero_grad(set_to_none=True)
            (net.items(idx)[0] * weights).sum().backward()
            grads.append([p.grad.coalesce().to_dense() if p.grad.is_sparse else p.grad.clone()
                          for p in net.parameters() if p.grad is not None])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for again in grads[1:] for a, b in zip(grads[0], again))
