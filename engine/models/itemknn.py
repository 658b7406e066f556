"""Item-item cosine over the training interactions of all domains; target items scored from the whole history.

Because it scores from the history (any domain), it serves cold-start users through items they had in the source.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from .base import Recommender


class ItemKNN(Recommender):
    name = "itemknn"
    uses_history = True
    defaults = {"neighbours": 100, "shrink": 0.0}

    def fit(self, scenario, progress=None):
        x = scenario.train_matrix().tocsc()
        counts = np.asarray(x.sum(0)).ravel()
        co = (x.T @ x[:, : scenario.n_target]).tocsr()  # all items x target items
        co.setdiag(0)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        co.data = co.data / (np.sqrt(counts[rows] * counts[co.indices]) + self.params["shrink"])
        self.similarity_ = _keep_top(co, self.params["neighbours"])
        self.n_items_ = scenario.n_items
        return self

    def score(self, batch):
        hist = batch.history.cpu().numpy()
        rows, cols = np.nonzero(hist >= 0)
        h = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, hist[rows, cols])),
                              shape=(len(hist), self.n_items_))
        return torch.from_numpy((h @ self.similarity_).toarray()).to(batch.users.device)

    def state(self):
        s = self.similarity_
        return {"indptr": torch.from_numpy(s.indptr.astype(np.int64)), "indices": torch.from_numpy(s.indices.astype(np.int64)),
                "data": torch.from_numpy(s.data.astype(np.float32)), "shape": torch.tensor(s.shape)}

    def load_state(self, scenario, tensors):
        shape = tuple(tensors["shape"].tolist())
        self.similarity_ = sparse.csr_matrix((tensors["data"].numpy(), tensors["indices"].numpy(),
                                              tensors["indptr"].numpy()), shape=shape)
        self.n_items_ = shape[0]
        return self


def _keep_top(m: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Keep each row's k largest entries: an item's neighbourhood."""
    m = m.tocsr()
    m.sort_indices()
    keep = np.zeros(len(m.data), bool)
    for r in np.flatnonzero(np.diff(m.indptr) > 0):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            keep[lo + np.argpartition(-m.data[lo:hi], k)[:k]] = True
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return sparse.csr_matrix((m.data[keep].astype(np.float32), (rows[keep], m.indices[keep])), shape=m.shape)
