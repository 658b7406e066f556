import numpy as np
import pandas as pd
import pytest

from engine import scenario as scenarios


def test_no_held_out_interaction_is_in_training(small_scenario):
    sc = small_scenario
    train = set(zip(sc.train["user"], sc.train["item"]))  # generated users never repeat an item in a domain
    for cases in (sc.valid, sc.test):
        for i in range(len(cases)):
            assert not any((int(cases.user[i]), int(item)) in train for item in cases.relevant[i])
    target_train = sc.train[sc.train["domain"] == 0]
    cold_users = np.concatenate([c.user[c.segment == "cold"] for c in (sc.valid, sc.test)])
    assert len(cold_users) and not target_train["user"].isin(cold_users).any()
    # a warm user's validation item is not in training either, and is masked (known) only at test time
    for i in np.flatnonzero(sc.valid.segment == "warm"):
        assert (int(sc.valid.user[i]), int(sc.valid.relevant[i][0])) not in train


def test_split_accounts_for_every_target_interaction(domains, small_scenario):
    sc = small_scenario
    n_target = len(domains["tgt"][0])
    target_train = int((sc.train["domain"] == 0).sum())
    warm_held = int((sc.valid.segment == "warm").sum() + (sc.test.segment == "warm").sum())
    cold = np.concatenate([c.user[c.segment == "cold"] for c in (sc.valid, sc.test)])
    cold_rows = int(domains["tgt"][0]["user_id"].isin(sc.users[cold]).sum())
    assert target_train + warm_held + cold_rows == n_target
    assert int((sc.train["domain"] == 1).sum()) == len(domains["src"][0])  # all source data trains


def test_warm_test_item_is_the_last_and_history_strictly_before(domains, small_scenario):
    sc = small_scenario
    inter = domains["tgt"][0]
    src = domains["src"][0]
    log = pd.concat([inter, src])
    for i in np.flatnonzero(sc.test.segment == "warm")[:50]:
        user = sc.users[sc.test.user[i]]
        mine = inter[inter["user_id"] == user]
        last = mine.iloc[np.lexsort((np.arange(len(mine)), mine["timestamp"].to_numpy()))[-1]]
        item = sc.items.iloc[sc.test.relevant[i][0]]
        assert item["item_id"] == last["item_id"]
        cutoff = last["timestamp"]
        history = sc.items.iloc[sc.test.history[i]]
        expected = log[(log["user_id"] == user) & (log["timestamp"] < cutoff)]
        assert len(history) == len(expected)
        assert set(history["item_id"]) == set(expected["item_id"])


def test_ties_are_not_before():
    inter_t = pd.DataFrame({"user_id": ["a"] * 4, "item_id": ["t1", "t2", "t3", "t4"],
                            "timestamp": [0.0, 1.0, 2.0, 5.0]})
    inter_s = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["s1", "s2"], "timestamp": [3.0, 5.0]})
    sc = scenarios.split({"t": (inter_t, None), "s": (inter_s, None)},
                         scenarios.scenario_spec(["s"], "t", seed=0, cold_fraction=0.0))
    assert list(sc.test.segment) == ["warm"]
    hist = set(sc.items.iloc[sc.test.history[0]]["item_id"])
    assert hist == {"t1", "t2", "t3", "s1"}  # s2 shares the test timestamp: not before
    assert set(sc.items.iloc[sc.valid.history[0]]["item_id"]) == {"t1", "t2"}
    # the validation item is masked at test time, training items always
    assert set(sc.items.iloc[sc.test.exclude[0]]["item_id"]) == {"t1", "t2", "t3"}
    assert set(sc.items.iloc[sc.valid.exclude[0]]["item_id"]) == {"t1", "t2"}


def test_cold_users_have_no_target_history_and_all_targets_relevant(domains, small_scenario):
    sc = small_scenario
    inter = domains["tgt"][0]
    for cases in (sc.valid, sc.test):
        for i in np.flatnonzero(cases.segment == "cold"):
            assert (cases.history[i] >= sc.n_target).all()  # source items only
            assert len(cases.exclude[i]) == 0
            user = sc.users[cases.user[i]]
            assert set(sc.items.iloc[cases.relevant[i]]["item_id"]) == set(inter.loc[inter["user_id"] == user, "item_id"])


def test_cold_fraction_and_halves(small_scenario):
    sc = small_scenario
    n_cold = int((sc.valid.segment == "cold").sum() + (sc.test.segment == "cold").sum())
    assert n_cold == round(0.2 * 240)
    assert abs(int((sc.valid.segment == "cold").sum()) - int((sc.test.segment == "cold").sum())) <= 1
    assert not set(sc.valid.user[sc.valid.segment == "cold"]) & set(sc.test.user[sc.test.segment == "cold"])


def test_split_is_determined_by_the_seed(domains):
    spec = scenarios.scenario_spec(["src"], "tgt", seed=3)
    a, b = scenarios.split(domains, spec), scenarios.split(domains, spec)
    c = scenarios.split(domains, scenarios.scenario_spec(["src"], "tgt", seed=4))
    cold = lambda sc: set(sc.users[sc.test.user[sc.test.segment == "cold"]])  # noqa: E731
    assert cold(a) == cold(b) and cold(a) != cold(c)
    assert a.items["item_id"].tolist() == b.items["item_id"].tolist()
    pd.testing.assert_frame_equal(a.train, b.train)


def test_target_items_come_first_and_include_items_without_interactions(domains):
    inter, items = domains["tgt"]
    extra = pd.concat([items, pd.DataFrame({"item_id": ["never"], "title": ["never bought"], "category": ["x"]})])
    sc = scenarios.split({"tgt": (inter, extra), "src": domains["src"]}, scenarios.scenario_spec(["src"], "tgt"))
    assert sc.n_target == len(extra)
    assert (sc.items.iloc[: sc.n_target]["domain"] == "tgt").all()
    assert "never" in set(sc.items.iloc[: sc.n_target]["item_id"])


def test_ragged_padding_keeps_the_most_recent():
    r = scenarios.Ragged(np.array([0, 3, 3, 5]), np.array([1, 2, 3, 4, 5]))
    assert r.padded(np.array([0, 1, 2])).tolist() == [[1, 2, 3], [-1, -1, -1], [4, 5, -1]]
    assert r.padded(np.array([0, 2]), max_len=2).tolist() == [[2, 3], [4, 5]]
    assert r.take(np.array([2, 0])).values.tolist() == [4, 5, 1, 2, 3]


def test_at_most_n_cases_is_a_seeded_subset_in_case_order(small_scenario):
    cases = small_scenario.valid
    assert cases.at_most(len(cases), seed=0) is cases
    few = cases.at_most(10, seed=3)
    assert len(few) == 10 and few.user.tolist() == cases.at_most(10, seed=3).user.tolist()
    users = list(cases.user)
    positions = [users.index(u) for u in few.user]  # users are distinct per split
    assert positions == sorted(positions)
    assert few.user.tolist() != cases.at_most(10, seed=4).user.tolist()


def test_equal_times_keep_the_target_first_then_file_order():
    inter_t = pd.DataFrame({"user_id": ["a"] * 5, "item_id": ["t3", "t1", "t2", "t4", "t5"],
                            "timestamp": [1.0, 1.0, 1.0, 2.0, 3.0]})
    inter_s = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["s1", "s0"], "timestamp": [1.0, 0.5]})
    sc = scenarios.split({"t": (inter_t, None), "s": (inter_s, None)},
                         scenarios.scenario_spec(["s"], "t", seed=0, cold_fraction=0.0))
    assert list(sc.items.iloc[sc.train["item"]]["item_id"]) == ["s0", "t3", "t1", "t2", "s1"]  # t4, t5 held out


def test_an_interaction_with_an_item_missing_from_its_item_table_is_named():
    inter = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["t1", "ghost"], "timestamp": [1.0, 2.0]})
    items = pd.DataFrame({"item_id": ["t1"], "title": ["one"]})
    source = pd.DataFrame({"user_id": ["a"], "item_id": ["s1"], "timestamp": [0.0]})
    with pytest.raises(ValueError, match="domain 't'.*'ghost'"):
        scenarios.split({"t": (inter, items), "s": (source, None)}, scenarios.scenario_spec(["s"], "t"))
