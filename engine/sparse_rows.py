"""Sparse matrices for (cases, items) score blocks: histories as sparse rows, scipy's sparse products with their rows
split over threads, and their adding into a dense block.

scipy's sparse products run on one core and let go of the GIL: cut into one contiguous part of rows per torch
thread, they use every core torch may use (lmkg's co-occurrence rows on the shipped data: 43 -> 27 ms a block of
1,024 cases on 2 cores). Torch operations stay on the calling thread: every thread that runs one starts its own
OpenMP team, whose spinning workers then slow the main thread's next operations (the Transformer's user vectors
took 0.57 -> 0.85 s when the adding ran on the pool).
"""
from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import sparse

MIN_ROWS = 64  # fewer rows per part cost more in handing over than they gain
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): a forked child makes its own
_inside = threading.local()
_creating = threading.Lock()
# Adding a CSR tensor to a dense one is all this module asks of torch's CSR support; its "beta" notice says nothing
# to a user (a filter set once: warnings.catch_warnings is not safe in threads that score at once).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def history_rows(history: torch.Tensor, n_items: int) -> sparse.csr_matrix:
    """(batch, n_items) how often each item is in each (-1 padded) history."""
    h = history.cpu().numpy()
    rows, cols = np.nonzero(h >= 0)
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, h[rows, cols])), shape=(len(h), n_items))


def l2_normalised(m: sparse.spmatrix) -> sparse.csr_matrix:
    """The rows divided by their L2 norms (an empty row stays empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return (sparse.diags((1 / np.maximum(norms, 1e-12)).astype(np.float32)) @ m).tocsr()


def parts(n_rows: int) -> list[tuple[int, int]]:
    """Contiguous (lo, hi) row ranges, one per torch thread (fewer for few rows; one inside a part's own work)."""
    n = 1 if getattr(_inside, "worker", False) else max(1, min(torch.get_num_threads(), n_rows // MIN_ROWS))
    bounds = np.linspace(0, n_rows, n + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def map_rows(fn, n_rows: int) -> list:
    """[fn(lo, hi) for each part], the parts run at once on a thread pool (in order of the rows). fn runs numpy and
    scipy only (no torch operation: see above)."""
    ranges = parts(n_rows)
    if len(ranges) == 1:
        return [fn(*ranges[0])]
    return list(_executor(len(ranges)).map(lambda r: _run(fn, *r), ranges))


def map_csr(fn, n_rows: int) -> sparse.csr_matrix:
    """fn(lo, hi) (a csr matrix of those rows) for each part, stacked."""
    pieces = map_rows(fn, n_rows)
    return pieces[0] if len(pieces) == 1 else sparse.vstack(pieces, format="csr")


def product(a: sparse.spmatrix, b: sparse.spmatrix) -> sparse.csr_matrix:
    """a @ b (csr), a's rows in parts."""
    a = a.tocsr()
    return map_csr(lambda lo, hi: (a[lo:hi] @ b).tocsr(), a.shape[0])


def _run(fn, lo: int, hi: int):
    _inside.worker = True
    try:
        return fn(lo, hi)
    finally:
        _inside.worker = False


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _creating:  # threads scoring at once share one pool (a smaller one is left to finish what it holds)
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < workers:
            _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="rows"))
        return _pool[2]


def add_sparse(dense: torch.Tensor, m: sparse.spmatrix, scale: torch.Tensor | None = None) -> torch.Tensor:
    """dense += m (scale[:, None] * m when given) for a sparse matrix m, touching only m's stored entries (in
    place, as torch adds a CSR tensor: half the time of a flat index_add_). Duplicate entries add up as they would
    in m: no sorting."""
    m = m.tocsr()
    values = m.data.astype(np.float32, copy=False)
    if scale is not None:
        values = values * np.repeat(scale.detach().cpu().numpy().astype(np.float32), np.diff(m.indptr))
    index = np.result_type(m.indptr, m.indices)
    csr = torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(index, copy=False)),
                                  torch.from_numpy(m.indices.astype(index, copy=False)), torch.from_numpy(values),
                                  size=m.shape, check_invariants=False)
    return dense.add_(csr.to(dense.device))
