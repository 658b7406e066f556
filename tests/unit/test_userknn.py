"""userknn: the nearest training users' target items, the neighbourhood chosen on validation per segment."""
import numpy as np
import pytest
import torch

from engine import evaluate
from engine.models import MODELS, userknn
from engine.models.content import validation_cases
from engine.scenario import CASE_SEGMENTS


def neighbour_cosines(scenario, history: np.ndarray, user: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition, one case at a time: the cosines of the history's item set to every other training user with
    target items, and those users' target rows."""
    x = scenario.train_matrix().toarray()
    n = scenario.n_target
    items = np.zeros(x.shape[1])
    items[history[history >= 0]] = 1.0
    others = np.flatnonzero((x[:, :n].sum(1) > 0) & (np.arange(len(x)) != user))
    cosines = x[others] @ items / (np.linalg.norm(x[others], axis=1) * np.linalg.norm(items))
    return cosines, x[others, :n]


def test_scores_are_the_nearest_other_users_target_items_weighted_by_cosine(small_scenario):
    sc = small_scenario
    cases = sc.test
    rows = np.concatenate([np.flatnonzero(cases.segment == s)[:4] for s in CASE_SEGMENTS])
    batch = sc.batch(cases, rows)
    with torch.no_grad():
        everyone = MODELS["userknn"](neighbours=sc.n_users).fit(sc).score(batch).numpy()
        nearest = MODELS["userknn"](neighbours=1).fit(sc).score(batch).numpy()
    for i, row in enumerate(rows):
        cosines, targets = neighbour_cosines(sc, batch.history[i].numpy(), int(cases.user[row]))
        # every other user: the cosine-weighted sum (the case's own training row, cosine ~1 for a warm case, is not
        # among them: it would only repeat items the user has)
        assert np.allclose(everyone[i], cosines @ targets, atol=1e-5)
        # one neighbour: the target row of a user with the largest cosine (any of equals), times that cosine
        best = np.flatnonzero(np.isclose(cosines, cosines.max()))
        assert any(np.allclose(nearest[i], cosines.max() * targets[u], atol=1e-5) for u in best)


def test_unset_neighbourhoods_are_the_best_grid_point_per_segment_on_validation(small_scenario):
    sc = small_scenario
    chosen = MODELS["userknn"]().fit(sc).neighbours_
    for segment in CASE_SEGMENTS:
        cases = validation_cases(sc, segment)
        rows = np.arange(len(cases))
        totals = {}
        for k in userknn.NEIGHBOURS:
            with torch.no_grad():
                scores = MODELS["userknn"](neighbours=k).fit(sc).score(sc.batch(cases, rows))
            totals[k] = evaluate.ndcg_sum(evaluate.mask_known(scores, cases, rows), cases, rows)
        assert totals[chosen[segment]] == pytest.approx(max(totals.values())), (segment, totals)


def test_the_test_cases_play_no_part_in_the_choice(small_scenario):
    sealed = MODELS["userknn"]().fit(small_scenario.without_test())  # any read of the test cases would raise
    assert sealed.neighbours_ == MODELS["userknn"]().fit(small_scenario).neighbours_
