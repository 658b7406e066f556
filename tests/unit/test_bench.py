"""What the bench runs, apart from training: its rows and which seeds each row gets."""
import pytest

from engine.bench import DEFAULT_ROWS, bench_rows, row_seeds
from engine.errors import CrossLensError


def test_bench_rows_run_on_their_own_seeds():
    """Models on --seeds, ablations on --ablation-seeds, peers (an hour each) on --peer-seeds, each defaulting to
    the one before."""
    assert row_seeds("lmkg", [0, 1, 2], [0, 1], [0]) == [0, 1, 2]
    assert row_seeds("lmkg -kg", [0, 1, 2], [0, 1], [0]) == [0, 1]
    assert row_seeds("recbole-sasrec", [0, 1, 2], [0, 1], [0]) == [0]
    assert row_seeds("recbole-lightgcn", [0, 1, 2], [0, 1]) == [0, 1]
    assert row_seeds("lmkg -kg", [0, 1, 2]) == row_seeds("recbole-sasrec", [0, 1, 2]) == [0, 1, 2]


def test_bench_rows_are_the_models_then_the_peers():
    """Without --models every model and ablation, then the named peers in either spelling; a misspelt row is
    refused before anything trains."""
    assert bench_rows() == DEFAULT_ROWS
    assert bench_rows(peers=["sasrec", "recbole-lightgcn"]) == [*DEFAULT_ROWS, "recbole-sasrec", "recbole-lightgcn"]
    assert bench_rows(["itemknn"], ["sasrec-mixed"]) == ["itemknn", "recbole-sasrec-mixed"]
    with pytest.raises(CrossLensError, match="unknown bench row.*recbole-gru4rec"):
        bench_rows(peers=["gru4rec"])
