import numpy as np
import pytest
import torch
from scipy import sparse

from engine import sparse_rows


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_rows_are_cut_into_one_contiguous_part_per_thread_and_few_rows_stay_whole(two_threads):
    assert sparse_rows.parts(1000) == [(0, 500), (500, 1000)]
    assert sparse_rows.parts(sparse_rows.MIN_ROWS) == [(0, sparse_rows.MIN_ROWS)]
    assert sparse_rows.parts(0) == [(0, 0)]


def test_a_product_in_parts_is_the_whole_product_to_the_last_entry(two_threads):
    rng = np.random.default_rng(0)
    a = sparse.random(1000, 300, density=0.02, format="csr", dtype=np.float32, random_state=rng)
    b = sparse.random(300, 200, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    whole = (a @ b).tocsr()
    got = sparse_rows.product(a, b)
    assert got.shape == whole.shape
    assert (got != whole).nnz == 0
    # a part's own work asking for parts runs inline in its thread (no waiting on the pool it runs on)
    nested = sparse_rows.map_csr(lambda lo, hi: sparse_rows.product(a[lo:hi], b), a.shape[0])
    assert (nested != whole).nnz == 0


def test_add_sparse_adds_duplicate_entries_as_the_dense_matrix_has_them():
    m = sparse.csr_matrix((np.array([1.0, 2.0, 4.0], np.float32), np.array([2, 2, 2]), np.array([0, 2, 3])),
                          shape=(2, 3))  # row 0 holds column 2 twice: 1 + 2
    dense = torch.ones(2, 3)
    sparse_rows.add_sparse(dense, m, torch.tensor([1.0, 0.5]))
    assert torch.equal(dense, torch.tensor([[1.0, 1.0, 4.0], [1.0, 1.0, 3.0]]))
