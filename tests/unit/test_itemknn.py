"""itemknn's neighbourhood and shrinkage, chosen on validation when unset (and lmkg's co-occurrence channel with it)."""
import itertools

import numpy as np
import pytest

from engine.evaluate import mask_known, ndcg_sum
from engine.models import MODELS, itemknn
from engine.models.content import validation_cases
from engine.scenario import CASE_SEGMENTS


def validation_total(scenario, sim) -> float:
    total = 0.0
    for segment in CASE_SEGMENTS:
        cases = validation_cases(scenario, segment)
        rows = np.arange(len(cases))
        total += ndcg_sum(mask_known(itemknn.history_scores(scenario.batch(cases, rows).history, sim), cases, rows),
                          cases, rows)
    return total


def test_unset_settings_are_the_best_grid_point_on_validation(small_scenario):
    model = MODELS["itemknn"]().fit(small_scenario)
    totals = {(k, s): validation_total(small_scenario, itemknn.similarity(small_scenario, k, s))
              for k, s in itertools.product(itemknn.NEIGHBOURS, itemknn.SHRINKS)}
    chosen = (model.chosen_["neighbours"], model.chosen_["shrink"])
    assert totals[chosen] == pytest.approx(max(totals.values()))
    assert (model.similarity_ != itemknn.similarity(small_scenario, *chosen)).nnz == 0


def test_the_test_cases_play_no_part_in_the_choice(small_scenario):
    sealed = MODELS["itemknn"]().fit(small_scenario.without_test())  # any read of the test cases would raise
    assert sealed.chosen_ == MODELS["itemknn"]().fit(small_scenario).chosen_


def test_fixed_settings_are_kept_and_the_shrinkage_changes_the_similarity(small_scenario):
    fixed = MODELS["itemknn"](neighbours=20, shrink=0.0).fit(small_scenario)
    assert fixed.chosen_ == {"neighbours": 20, "shrink": 0.0}
    assert (np.diff(fixed.similarity_.indptr) <= 20).all()
    damped = itemknn.similarity(small_scenario, 20, 50.0)
    assert damped.max() < fixed.similarity_.max()  # a larger denominator: every cosine shrinks


def test_lmkg_takes_its_collaborative_channel_from_the_same_choice(small_scenario):
    lmkg = MODELS["lmkg"](dim=16, epochs=1, batch_size=32, negatives=32, max_history=20).fit(small_scenario)
    knn = MODELS["itemknn"]().fit(small_scenario)
    assert (lmkg.cf_ != knn.similarity_).nnz == 0


def test_a_neighbourhood_is_each_rows_k_largest_entries_ties_to_the_lower_column():
    from scipy import sparse
    rng = np.random.default_rng(0)
    m = sparse.random(50, 40, density=0.3, format="csr", random_state=1, dtype=np.float32)
    m.data = rng.integers(1, 5, len(m.data)).astype(np.float32)  # few values: many ties at the cut
    kept = itemknn._keep_top(m, 4)
    for r in range(50):
        row = m[r].toarray().ravel()
        order = sorted(np.flatnonzero(row), key=lambda c: (-row[c], c))[:4]
        assert sorted(kept[r].indices) == sorted(order)
        assert np.array_equal(kept[r].toarray().ravel()[order], row[order])


def test_neighbourhoods_made_a_block_of_rows_at_a_time_equal_the_whole_matrix_at_once(small_scenario, monkeypatch):
    co, counts = itemknn._cooccurrence(small_scenario)
    whole = itemknn._keep_top(itemknn._shrunk(co, counts, 10.0), 5)
    monkeypatch.setattr(itemknn, "BLOCK_ENTRIES", max(co.nnz // 7, 1))  # several blocks, cut between rows
    blocked = itemknn._neighbourhoods(co, counts, 10.0, 5)
    assert co.nnz > 7 and blocked.shape == whole.shape
    for a, b in ((blocked.indptr, whole.indptr), (blocked.indices, whole.indices), (blocked.data, whole.data)):
        assert np.array_equal(a, b)
