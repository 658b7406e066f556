import math

import numpy as np
import pytest
from scipy import sparse

from engine import metrics


def test_single_relevant_item_at_rank_3():
    hits = np.zeros((1, 20), bool)
    hits[0, 2] = True
    m = metrics.ranking_metrics(hits, np.array([1]))
    assert m["hr@5"][0] == 1 and m["hr@10"][0] == 1
    assert m["ndcg@5"][0] == pytest.approx(1 / math.log2(4))
    assert m["mrr@5"][0] == pytest.approx(1 / 3)
    assert m["recall@5"][0] == 1 and m["precision@5"][0] == pytest.approx(1 / 5)
    assert m["f1@5"][0] == pytest.approx(2 * 0.2 * 1 / 1.2)


def test_hit_below_cutoff_counts_nothing():
    hits = np.zeros((1, 20), bool)
    hits[0, 7] = True  # rank 8
    m = metrics.ranking_metrics(hits, np.array([1]))
    assert m["hr@5"][0] == 0 and m["ndcg@5"][0] == 0 and m["mrr@5"][0] == 0 and m["f1@5"][0] == 0
    assert m["hr@10"][0] == 1 and m["mrr@10"][0] == pytest.approx(1 / 8)


def test_several_relevant_items():
    # 3 relevant items, found at ranks 1 and 4 of the top 5
    hits = np.zeros((1, 20), bool)
    hits[0, [0, 3]] = True
    m = metrics.ranking_metrics(hits, np.array([3]))
    dcg = 1 + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@5"][0] == pytest.approx(dcg / idcg)
    assert m["recall@5"][0] == pytest.approx(2 / 3)
    assert m["precision@5"][0] == pytest.approx(2 / 5)
    assert m["mrr@5"][0] == 1


def test_ndcg_is_one_for_a_perfect_list_longer_than_k():
    hits = np.zeros((1, 20), bool)
    hits[0, :12] = True
    m = metrics.ranking_metrics(hits, np.array([12]))
    assert m["ndcg@10"][0] == pytest.approx(1.0) and m["ndcg@20"][0] == pytest.approx(1.0)
    assert m["recall@10"][0] == pytest.approx(10 / 12)


def test_coverage():
    top = np.array([[0, 1], [1, 2]])
    assert metrics.coverage(top, 10) == pytest.approx(0.3)


def test_intra_list_diversity():
    # items 0 and 1 share both attributes, item 2 shares nothing with them
    f = sparse.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    ild = metrics.intra_list_diversity(np.array([[0, 1], [0, 2], [0, 1]]), f)
    assert ild.tolist() == pytest.approx([0.0, 1.0, 0.0])
    # one shared attribute out of three distinct ones: 1 - 1/3
    f2 = sparse.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]]))
    assert metrics.intra_list_diversity(np.array([[0, 1]]), f2)[0] == pytest.approx(2 / 3)


def test_novelty_prefers_rare_items():
    popularity = np.array([99, 0])
    nov = metrics.novelty(np.array([[0], [1]]), popularity, n_users=99)
    assert nov[0] == pytest.approx(0.0) and nov[1] == pytest.approx(-math.log2(1 / 100))


def test_paired_test_detects_a_consistent_difference():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    better = metrics.paired_test(a + 0.1, a)
    same = metrics.paired_test(a, a)
    assert better["p_value"] < 1e-6 and better["mean_diff"] == pytest.approx(0.1)
    assert same["p_value"] == 1.0


def test_gini_of_recommendation_counts():
    assert metrics.gini(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)  # every item equally often
    assert metrics.gini(np.array([[0, 0], [0, 0]]), 4) == pytest.approx(0.75)  # one item of four: (n - 1) / n
    assert metrics.gini(np.array([[0, 1], [0, 2]]), 4) > metrics.gini(np.array([[0, 1], [2, 3]]), 4)


def test_a_paired_test_says_how_often_each_run_is_better():
    result = metrics.paired_test(np.array([1.0, 0.0, 0.5, 0.5]), np.array([0.0, 1.0, 0.2, 0.5]))
    assert (result["a_better"], result["b_better"]) == (0.5, 0.25)  # the fourth case is a tie
