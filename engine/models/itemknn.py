"""Item-item cosine over the training interactions of all domains; target items scored from the whole history.

Because it scores from the history (any domain), it serves cold-start users through items they had in the source.
The shrinkage (damping pairs that co-occur rarely) and the neighbourhood size matter as much as the model: left
unset, they are chosen by NDCG@10 on validation over NEIGHBOURS x SHRINKS, so the baseline is as strong as its
family allows (and lmkg's co-occurrence channel is chosen the same way).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from ..evaluate import block_rows, mask_known, ndcg_sum
from ..scenario import CASE_SEGMENTS
from ..sparse_rows import add_sparse, history_rows, product
from .base import Explainable, Recommender
from .content import validation_cases
from .settings import COUNT, NON_NEGATIVE, Space

NEIGHBOURS = (100, 300, 1000)
SHRINKS = (0.0, 10.0, 30.0, 100.0)
BLOCK_ENTRIES = 1 << 22  # co-occurrence entries shrunk and sorted at once (_neighbourhoods)


class ItemKNN(Explainable, Recommender):
    name = "itemknn"
    description = "item-to-item co-occurrence over all domains"
    uses_history = True
    defaults = {"neighbours": None, "shrink": None}
    ranges = {"neighbours": COUNT, "shrink": NON_NEGATIVE}
    search = {"neighbours": Space(10, 1000, log=True), "shrink": Space(0.0, 100.0)}
    help = {"neighbours": "similar items kept per item; empty: chosen on validation",
            "shrink": "damps the similarity of items that co-occur rarely (0: plain cosine); empty: chosen on "
                      "validation"}

    def fit(self, scenario, progress=None):
        self.similarity_, self.chosen_ = choose_similarity(scenario, self.params["neighbours"], self.params["shrink"])
        if progress:
            progress({"stage": "settings chosen on validation", **self.chosen_}, 1.0)
        return self

    def score(self, batch, out=None):
        return history_scores(batch.history, self.similarity_, out)

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
    return _neighbourhoods(*_cooccurrence(scenario), shrink, neighbours)


def choose_similarity(scenario, neighbours: int | None = None, shrink: float | None = None
                      ) -> tuple[sparse.csr_matrix, dict]:
    """The similarity with the given settings; an unset one chosen by item-kNN's NDCG@10 on the validation cases
    of both segments (content.validation_cases); of equals, the first tried (less shrinkage, then more
    neighbours). Returns it and the settings."""
    shrinks = SHRINKS if shrink is None else (float(shrink),)
    sizes = NEIGHBOURS if neighbours is None else (int(neighbours),)
    co, counts = _cooccurrence(scenario)
    if len(shrinks) * len(sizes) == 1:
        return _neighbourhoods(co, counts, shrinks[0], sizes[0]), {"neighbours": sizes[0], "shrink": shrinks[0]}
    cases, step = [validation_cases(scenario, s) for s in CASE_SEGMENTS], block_rows(scenario.n_target)
    chunks = [(c, rows, scenario.batch(c, rows).history) for c in cases if len(c)
              for rows in np.array_split(np.arange(len(c)), -(-len(c) // step))]  # none: the first candidate
    best = None
    for s in shrinks:
        widest = _neighbourhoods(co, counts, s, max(sizes))
        for k in sorted(sizes, reverse=True):
            sim = widest if k == max(sizes) else _keep_top(widest, k)
            total = sum(ndcg_sum(mask_known(history_scores(h, sim), c, rows), c, rows) for c, rows, h in chunks)
            if best is None or total > best[0] + 1e-9:
                best = (total, (s, k), sim)
    (s, k), sim = best[1], best[2]
    return sim, {"neighbours": k, "shrink": s}


def _cooccurrence(scenario) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(all items x target items) co-occurrence counts in training histories (no self pairs), and each item's
    number of training interactions."""
    x = scenario.train_matrix().tocsc()
    counts = np.asarray(x.sum(0)).ravel()
    co = (x.T @ x[:, : scenario.n_target]).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return co, counts


def _shrunk(co: sparse.csr_matrix, counts: np.ndarray, shrink: float, first_row: int = 0) -> sparse.csr_matrix:
    """Cosine of the co-occurrence counts, its denominator raised by `shrink` (co: rows first_row.. of the
    matrix)."""
    out = co.copy()
    rows = np.repeat(np.arange(first_row, first_row + out.shape[0]), np.diff(out.indptr))
    out.data = out.data / (np.sqrt(counts[rows] * counts[out.indices]) + shrink)
    return out


def _neighbourhoods(co: sparse.csr_matrix, counts: np.ndarray, shrink: float, k: int) -> sparse.csr_matrix:
    """_keep_top(_shrunk(co, counts, shrink), k), a block of rows (about BLOCK_ENTRIES stored entries) at a time, so
    the shrunk copy and the sort's index arrays never cover the whole matrix (at 16x the shipped size the choice's
    peak fell by 140 MB and its time from 210 to 187 s)."""
    co = co.tocsr()
    cuts = np.searchsorted(co.indptr, np.arange(BLOCK_ENTRIES, co.nnz, BLOCK_ENTRIES))
    bounds = np.unique(np.concatenate([[0], cuts, [co.shape[0]]]))
    return sparse.vstack([_keep_top(_shrunk(co[a:b], counts, shrink, a), k) for a, b in zip(bounds, bounds[1:])],
                         format="csr")


def history_scores(history: torch.Tensor, sim: sparse.csr_matrix, out: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, n_target): the summed similarity of each target item to the items of each (-1 padded) history (into
    out if given)."""
    if out is not None:
        return add_sparse(out.zero_(), history_matrix(history, sim))
    return torch.from_numpy(history_matrix(history, sim).toarray()).to(history.device)


def history_matrix(history: torch.Tensor, sim: sparse.csr_matrix) -> sparse.csr_matrix:
    """history_scores as a sparse (batch, n_target) matrix: only the items the histories' neighbourhoods reach."""
    return product(history_rows(history, sim.shape[0]), sim)


def similarity_state(s: sparse.csr_matrix, prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}indptr": torch.from_numpy(s.indptr.astype(np.int64)),
            f"{prefix}indices": torch.from_numpy(s.indices.astype(np.int64)),
            f"{prefix}data": torch.from_numpy(s.data.astype(np.float32)), f"{prefix}shape": torch.tensor(s.shape)}


def similarity_from_state(tensors: dict[str, torch.Tensor], prefix: str = "") -> sparse.csr_matrix:
    return sparse.csr_matrix((tensors[f"{prefix}data"].numpy(), tensors[f"{prefix}indices"].numpy(),
                              tensors[f"{prefix}indptr"].numpy()), shape=tuple(tensors[f"{prefix}shape"].tolist()))


def _keep_top(m: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Keep each row's k largest entries: an item's neighbourhood (of equal entries, the lower column). One sort of
    all entries by (row, -value, column): an entry is kept when fewer than k of its row come before it."""
    m = m.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))
    keep = np.zeros(len(m.data), bool)
    keep[order[np.arange(len(order)) - m.indptr[rows[order]] < k]] = True
    return sparse.csr_matrix((m.data[keep].astype(np.float32), (rows[keep], m.indices[keep])), shape=m.shape)
