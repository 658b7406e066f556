"""Item-frequency and user-activity buckets: assignment on a hand-made scenario, the settings, stored runs' tests."""
import shutil

import numpy as np
import pandas as pd
import pytest

from engine import api, evaluate
from engine import scenario as scenarios
from engine.errors import CrossLensError
from engine.store import Store, write_parquet

# Training rows of a held-out item come from single-interaction users (never cases): item -> how many.
FILLERS = {"tail_item": 4, "torso_item": 5, "head_item": 20}
# Warm users' target interactions (item, timestamp): the last is tested, the second last validates.
WARM = {
    "w_new": [("f0", 1), ("f1", 2), ("new_item", 3)],                       # new_item: held out by every user
    "w_tail": [("f0", 1), ("f1", 2), ("tail_item", 3)],                     # tail_item: 4 training rows
    "w_torso": [("f2", 0), ("f0", 1), ("tail_item", 2), ("torso_item", 3)],  # validates on tail_item (held out)
    "w_head": [("f2", 0), ("f3", 0.1), ("f4", 0.2), ("f5", 0.3), ("f0", 1), ("f1", 2), ("head_item", 3)],
}
# What the test cases should get: (item bucket, target-domain items in the history).
EXPECTED = {"w_new": ("new", 2), "w_tail": ("tail", 2), "w_torso": ("torso", 3), "w_head": ("head", 6),
            "cold": ("", 0)}


def tiny_tables() -> dict:
    """Target 'tgt' (25 items, so a top-20 list fits) and source 'src'. The one user in both is the cold user: all
    of their target interactions (new_item among them) are held out, their source items are their history."""
    rows = [(user, item, t) for user, events in WARM.items() for item, t in events]
    rows += [(f"fill_{item}_{i}", item, 1) for item, n in FILLERS.items() for i in range(n)]
    rows += [("cold", "new_item", 1), ("cold", "f0", 2)]
    target = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype({"timestamp": float})
    ids = sorted(set(target["item_id"])) + [f"spare{i}" for i in range(14)]
    items = pd.DataFrame({"item_id": ids, "title": ids})
    source = pd.DataFrame({"user_id": ["cold", "cold"], "item_id": ["s0", "s1"], "timestamp": [1.0, 2.0]})
    return {"tgt": (target, items), "src": (source, None)}


@pytest.fixture(scope="module")
def tiny():
    # cold_fraction 1: the only user in both domains is drawn cold; with one cold user, it is a test case
    return scenarios.split(tiny_tables(), scenarios.scenario_spec(["src"], "tgt", seed=0, cold_fraction=1.0))


def evaluate_tiny(sc, **buckets) -> evaluate.Evaluation:
    top = np.tile(np.arange(evaluate.TOP), (len(sc.test), 1))  # any lists: buckets don't depend on them
    return evaluate.evaluate_top(sc, sc.test, top, **buckets)


def test_each_case_gets_its_held_out_items_bucket_and_its_target_history(tiny):
    per_case = evaluate_tiny(tiny).per_case.set_index("user_id")
    assert sorted(per_case.index) == sorted(EXPECTED)
    got = {u: (r["item_bucket"], int(r["target_history"])) for u, r in per_case.iterrows()}
    assert got == EXPECTED


def test_summary_counts_each_segment_and_the_buckets_add_up(tiny):
    summary = evaluate_tiny(tiny).summary
    counts = {segment: values["cases"] for segment, values in summary.items()}
    assert counts == {"all": 5, "warm": 4, "cold": 1, "new": 1, "tail": 1, "torso": 1, "head": 1, "new+tail": 2,
                      "users 0": 1, "users 1-2": 2, "users 3-5": 1, "users 6-10": 1, "users 11+": 0}
    groups = evaluate.segment_groups(summary)
    assert sum(counts[s] for s in groups["items"] if s != evaluate.RARE) == counts["warm"]
    assert sum(counts[s] for s in groups["activity"]) == counts["all"]
    assert summary["new+tail"]["cases"] == summary["new"]["cases"] + summary["tail"]["cases"]
    assert "ndcg@10" in summary["users 0"] and "ndcg@10" not in summary["users 11+"]  # empty: its count only


def test_a_bucket_is_the_mean_of_its_cases(small_scenario):
    from engine.models import MODELS
    ev = evaluate.evaluate(MODELS["pop"]().fit(small_scenario), small_scenario)
    tail = ev.per_case[ev.per_case["item_bucket"].isin(["new", "tail"])]
    assert len(tail) == ev.summary["new+tail"]["cases"] > 0
    assert tail["ndcg@10"].mean() == pytest.approx(ev.summary["new+tail"]["ndcg@10"], abs=1e-6)
    assert set(ev.per_case.loc[ev.per_case["segment"] == "cold", "item_bucket"]) == {""}


def test_boundary_settings_change_the_assignment(tiny):
    ev = evaluate_tiny(tiny, item_buckets=(1, 3, 5), activity_buckets=(1, 4))
    buckets = ev.per_case.set_index("user_id")["item_bucket"].to_dict()
    # tail_item (4 rows) is torso from 3; torso_item (5 rows) is head from 5
    assert buckets == {"w_new": "new", "w_tail": "torso", "w_torso": "head", "w_head": "head", "cold": ""}
    counts = {s: v["cases"] for s, v in ev.summary.items() if s.startswith(evaluate.USERS)}
    assert counts == {"users 0": 1, "users 1-3": 3, "users 4+": 1}


@pytest.mark.parametrize("bad", [{"item_buckets": (5, 1, 20)}, {"item_buckets": (0, 5, 20)},
                                 {"item_buckets": (1, 5)}, {"item_buckets": (1.5, 5, 20)},
                                 {"activity_buckets": ()}, {"activity_buckets": (3, 3)},
                                 {"activity_buckets": "1,3"}])
def test_bad_boundaries_are_refused_with_a_readable_message(tiny, bad):
    with pytest.raises(CrossLensError, match="strictly increasing positive integers"):
        evaluate_tiny(tiny, **bad)


def test_peers_keep_every_segment_but_the_cold_users():
    segments = evaluate.segments_without_cold_users()
    assert "cold" not in segments and "users 0" not in segments
    assert {"all", "warm", "new", "new+tail", "head", "users 1-2", "users 11+"} <= set(segments)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, domains, ingested_workspace):
    """A workspace with pop and itemknn trained on the generated domains."""
    ws = ingested_workspace(tmp_path_factory.mktemp("segments-ws"), domains)
    return ws, [api.train("src", "tgt", model, workspace=ws) for model in ("itemknn", "pop")]


def test_compare_tests_every_bucket_with_cases(two_runs):
    ws, (a, b) = two_runs
    result = api.compare(a["id"], b["id"], workspace=ws)
    with_cases = {s for s, v in a["metrics"].items() if v["cases"]}
    assert set(result["segments"]) == with_cases
    assert {"new+tail", "torso", "users 3-5"} <= with_cases  # the generated data has these
    for segment, test in result["segments"].items():
        assert test["n"] == a["metrics"][segment]["cases"] and 0 <= test["p_value"] <= 1
        assert test["mean_a"] == pytest.approx(a["metrics"][segment]["ndcg@10"], abs=1e-5)


def test_compare_of_runs_stored_before_buckets_has_the_user_segments_only(two_runs, tmp_path):
    ws, (a, b) = two_runs
    old = shutil.copytree(ws, tmp_path / "old-ws")
    for run in (a, b):  # per-case tables as runs stored them before buckets existed
        path = Store(old).run_dir(run["id"]) / "per_user.parquet"
        write_parquet(pd.read_parquet(path).drop(columns=["item_bucket", "target_history"]), path)
    result = api.compare(a["id"], b["id"], workspace=old)
    assert set(result["segments"]) == {"all", "warm", "cold"}


def test_bench_tables_show_each_bucket_and_a_dash_for_runs_stored_before_buckets(two_runs):
    from engine import bench
    ws, (knn, pop) = two_runs
    old = {**pop, "metrics": {s: pop["metrics"][s] for s in evaluate.SEGMENTS}}
    lines = bench.render([bench._row("src", "tgt", "itemknn", [knn]), bench._row("src", "tgt", "pop", [old])],
                         [0], ws).splitlines()
    start = lines.index("### src -> tgt: ndcg@10 per item bucket")
    header, _, new, stored_before = lines[start + 2: start + 6]
    assert f"| new+tail (n = {knn['metrics']['new+tail']['cases']}) |" in header
    assert f"| {knn['metrics']['new+tail']['ndcg@10']:.4f} |" in new
    assert stored_before == "| pop | 0 | — | — | — | — | — |"
    assert "### src -> tgt: hr@10 per user-activity bucket" in lines


def test_the_long_tail_share_counts_the_new_and_tail_items_of_each_list(tiny):
    """A list of the new item, the tail item and a head item is 2/3 long tail; the segment value is the cases' mean."""
    index = {i: n for n, i in enumerate(tiny.items["item_id"][: tiny.n_target])}
    lists = [index["new_item"], index["tail_item"], index["head_item"]]
    top = np.array([lists + [i for i in range(evaluate.TOP + 3) if i not in lists][: evaluate.TOP - 3]
                    for _ in range(len(tiny.test))])
    ev = evaluate.evaluate_top(tiny, tiny.test, top)
    rare = evaluate.target_interactions(tiny) < evaluate.ITEM_BUCKETS[1]
    expected = rare[top[:, :10]].mean(1)
    assert np.allclose(ev.per_case["long_tail@10"], expected) and expected[0] >= 2 / 10
    assert ev.summary["all"]["long_tail@10"] == pytest.approx(expected.mean(), abs=1e-6)
    assert 0 <= ev.summary["all"]["gini@10"] <= 1


def test_where_a_beats_b_equals_the_per_case_differences_in_every_cohort(two_runs):
    ws, (a, b) = two_runs
    result = api.compare(a["id"], b["id"], "hr@10", workspace=ws)
    cases = [pd.read_parquet(Store(ws).run_dir(r["id"]) / "per_user.parquet") for r in (a, b)]
    both = cases[0].merge(cases[1], on=["user_id", "segment"], suffixes=("_a", "_b"))
    for segment, mask in evaluate.segment_masks(cases[0]).items():
        if not mask.any():
            continue
        users = set(cases[0].loc[mask, "user_id"])
        part = both[both["user_id"].isin(users)]
        diff = part["hr@10_a"].to_numpy() - part["hr@10_b"].to_numpy()
        got = result["segments"][segment]
        assert got["n"] == len(part) == mask.sum()
        assert got["a_better"] == pytest.approx((diff > 0).mean())
        assert got["b_better"] == pytest.approx((diff < 0).mean())
        assert got["mean_diff"] == pytest.approx(diff.mean())
        assert got["mean_a"] == pytest.approx(a["metrics"][segment]["hr@10"], abs=1e-5)  # the segment's figure
