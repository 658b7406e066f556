"""LMKG's collaborative channel: the history's item-item co-occurrence (engine.models.itemknn, all domains; its
neighbourhood size and shrinkage chosen on validation as itemknn chooses them).

The network generalises through text and knowledge; this channel keeps the exact "bought X, then Y" evidence a
64-d vector blurs. It stays sparse: it touches only the target items the histories' neighbourhoods reach, and
each row is scaled to 1 at its best item, so a weight w adds w network standard deviations there.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from ... import sparse_rows
from .. import itemknn


def unit_rows(history: torch.Tensor, similarity) -> sparse.csr_matrix:
    """(batch, n_target) csr co-occurrence scores of each (-1 padded) history, each row divided by its largest
    entry (similarities are >= 0; an empty row stays empty). The rows in parts (engine.sparse_rows)."""
    def part(lo: int, hi: int) -> sparse.csr_matrix:
        cf = itemknn.history_matrix(history[lo:hi], similarity)
        counts = np.diff(cf.indptr)
        top = np.ones(len(counts), np.float32)
        top[counts > 0] = np.maximum.reduceat(cf.data, cf.indptr[:-1][counts > 0])
        cf.data /= np.repeat(np.maximum(top, 1e-6), counts)
        return cf

    return sparse_rows.map_csr(part, len(history))


def item_scores(rows: torch.Tensor, similarity, item: int) -> torch.Tensor:
    """(P,) the unit-row score of target item `item` for each history row, as unit_rows gives it, from only the
    similarity rows of the items the histories hold and the target items those reach: every other target item
    scores 0 and similarities are >= 0, so each row's maximum is among the reached ones."""
    held = torch.unique(rows[rows >= 0]).cpu()
    reached = similarity[held.numpy()]
    columns = np.union1d(reached.indices, [item])
    local = torch.searchsorted(held, rows.cpu().clamp(min=0))
    local = torch.where(rows.cpu() >= 0, local, -1)
    cf = itemknn.history_scores(local, reached[:, columns]).to(rows.device)
    top = cf.max(1).values.clamp(min=1e-6)
    return cf[:, int(np.searchsorted(columns, item))] / top
