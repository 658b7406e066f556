import pytest

from engine import evaluate
from engine.models import MODELS


@pytest.fixture(scope="module")
def knn(small_scenario):
    return MODELS["itemknn"]().fit(small_scenario)


def test_known_items_are_never_ranked(knn, small_scenario):
    cases = small_scenario.test
    top, _ = evaluate.rank(knn, small_scenario, cases, batch_size=7)  # odd batch size crosses batch edges
    for i in range(len(cases)):
        assert not set(top[i]) & set(cases.exclude[i])
    assert (top < small_scenario.n_target).all()


def test_hits_mark_exactly_the_relevant_items(knn, small_scenario):
    cases = small_scenario.test
    top, hits = evaluate.rank(knn, small_scenario, cases)
    for i in range(len(cases)):
        assert hits[i].tolist() == [t in set(cases.relevant[i]) for t in top[i]]


def test_summary_has_every_segment_and_metric(knn, small_scenario):
    ev = evaluate.evaluate(knn, small_scenario)
    assert len(ev.per_case) == len(small_scenario.test)
    assert ev.summary["warm"]["cases"] + ev.summary["cold"]["cases"] == ev.summary["all"]["cases"]
    assert {"all", "warm", "cold", "new+tail", "users 0"} <= set(ev.summary)
    for seg in [s for s, v in ev.summary.items() if v["cases"]]:  # the buckets too, where they have cases
        for k in (5, 10, 20):
            for m in ("hr", "ndcg", "mrr", "recall", "precision", "f1", "coverage"):
                assert 0 <= ev.summary[seg][f"{m}@{k}"] <= 1
        assert 0 <= ev.summary[seg]["ild@10"] <= 1 and ev.summary[seg]["novelty@10"] > 0
    warm = ev.per_case[ev.per_case["segment"] == "warm"]
    assert warm["ndcg@10"].mean() == pytest.approx(ev.summary["warm"]["ndcg@10"], abs=1e-6)


def test_sampled_mode_ranks_against_fewer_candidates(knn, small_scenario):
    full = evaluate.evaluate(knn, small_scenario).summary["all"]["hr@10"]
    sampled = evaluate.evaluate(knn, small_scenario, sampled=20).summary["all"]["hr@10"]
    assert sampled >= full  # fewer competitors can only raise the relevant items' rank
    # with 5 negatives, every relevant item of a case with at most 15 is among the 20 candidates ranked
    cases = small_scenario.test
    _, hits = evaluate.rank(knn, small_scenario, cases, sampled=5)
    small = cases.relevant.lengths <= evaluate.TOP - 5
    assert (hits[small].sum(1) == cases.relevant.lengths[small]).all()


def test_sampled_negatives_are_seeded(knn, small_scenario):
    a = evaluate.evaluate(knn, small_scenario, sampled=10).per_case
    b = evaluate.evaluate(knn, small_scenario, sampled=10).per_case
    assert a.equals(b)
