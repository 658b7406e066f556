"""Item-item cosine over the training interactions of all domains; target items scored from the whole history.

Because it scores from the history (any domain), it serves cold-start users through items they had in the source.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from .base import Explainable, Recommender
from .settings import COUNT, NON_NEGATIVE, Space


class ItemKNN(Explainable, Recommender):
    name = "itemknn"
    description = "item-to-item co-occurrence over all domains"
    uses_history = True
    defaults = {"neighbours": 100, "shrink": 0.0}
    ranges = {"neighbours": COUNT, "shrink": NON_NEGATIVE}
    search = {"neighbours": Space(10, 1000, log=True), "shrink": Space(0, 100)}
    help = {"shrink": "damps the similarity of items that co-occur rarely (0: plain cosine)"}

    def fit(self, scenario, progress=None):
        self.similarity_ = similarity(scenario, self.params["neighbours"], self.params["shrink"])
        return self

    def score(self, batch):
        return history_scores(batch.history, self.similarity_)

    def state(self):
        return similarity_state(self.similarity_)

    def load_state(self, scenario, tensors):
        self.similarity_ = similarity_from_state(tensors)
        return self

    def score_perturbed(self, history, item, keep_history, keep_entities=None):
        """(P,) scores of target item `item` from P copies of one history (L,), copy p keeping the positions
        where keep_history[p] is True. The model has no entities: keep_entities must have 0 columns."""
        if keep_entities is not None and keep_entities.shape[1]:
            raise ValueError("itemknn has no knowledge-graph entities to keep or remove")
        rows = torch.where(keep_history, history[None, :], torch.full_like(history, -1)[None, :])
        return history_scores(rows, self.similarity_[:, [item]])[:, 0]  # score() restricted to one column


def similarity(scenario, neighbours: int, shrink: float = 0.0) -> sparse.csr_matrix:
    """(all items x target items) cosine of co-occurrence in training histories, each row's top `neighbours`."""
    x = scenario.train_matrix().tocsc()
    counts = np.asarray(x.sum(0)).ravel()
    co = (x.T @ x[:, : scenario.n_target]).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
    co.data = co.data / (np.sqrt(counts[rows] * counts[co.indices]) + shrink)
    return _keep_top(co, neighbours)


def history_scores(history: torch.Tensor, sim: sparse.csr_matrix) -> torch.Tensor:
    """(batch, n_target): the summed similarity of each target item to the items of each (-1 padded) history."""
    return torch.from_numpy(history_matrix(history, sim).toarray()).to(history.device)


def history_matrix(history: torch.Tensor, sim: sparse.csr_matrix) -> sparse.csr_matrix:
    """history_scores as a sparse (batch, n_target) matrix: only the items the histories' neighbourhoods reach."""
    hist = history.cpu().numpy()
    rows, cols = np.nonzero(hist >= 0)
    h = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, hist[rows, cols])), shape=(len(hist), sim.shape[0]))
    return h @ sim


def similarity_state(s: sparse.csr_matrix, prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}indptr": torch.from_numpy(s.indptr.astype(np.int64)),
            f"{prefix}indices": torch.from_numpy(s.indices.astype(np.int64)),
            f"{prefix}data": torch.from_numpy(s.data.astype(np.float32)), f"{prefix}shape": torch.tensor(s.shape)}


def similarity_from_state(tensors: dict[str, torch.Tensor], prefix: str = "") -> sparse.csr_matrix:
    return sparse.csr_matrix((tensors[f"{prefix}data"].numpy(), tensors[f"{prefix}indices"].numpy(),
                              tensors[f"{prefix}indptr"].numpy()), shape=tuple(tensors[f"{prefix}shape"].tolist()))


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
