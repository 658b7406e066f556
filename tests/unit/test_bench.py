"""What the bench runs, apart from training: which seeds each row gets."""
from engine.bench import row_seeds


def test_bench_rows_run_on_their_own_seeds():
    """Models on --seeds, ablations on --ablation-seeds, peers (an hour each) on --peer-seeds, each defaulting to
    the one before."""
    assert row_seeds("lmkg", [0, 1, 2], [0, 1], [0]) == [0, 1, 2]
    assert row_seeds("lmkg -kg", [0, 1, 2], [0, 1], [0]) == [0, 1]
    assert row_seeds("recbole-sasrec", [0, 1, 2], [0, 1], [0]) == [0]
    assert row_seeds("recbole-lightgcn", [0, 1, 2], [0, 1]) == [0, 1]
    assert row_seeds("lmkg -kg", [0, 1, 2]) == row_seeds("recbole-sasrec", [0, 1, 2]) == [0, 1, 2]
