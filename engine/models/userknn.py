"""User-kNN: the training users whose histories (any domain) are most like the case's, and their target items.

score(case, item) = sum over the case's `neighbours` most similar training users v that have target items of
cos(history, v's training items) * [v had item]. The cosine is over binary item sets of all domains, so a cold user
is matched through their source items alone: "users who bought what you bought in arts bought this in office", the
classic neighbourhood baseline of cross-domain cold start, and a strong one (on the shipped data it beats item-kNN
on cold users). The neighbourhood size is chosen on validation per segment (warm, cold) when unset.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from ..evaluate import block_rows, mask_known, ndcg_sum
from ..scenario import CASE_SEGMENTS
from ..sparse_rows import add_sparse, history_rows, l2_normalised, product
from .base import Recommender
from .content import validation_cases
from .settings import COUNT, Space

NEIGHBOURS = (25, 50, 100, 200, 400, 1000)
SIMILARITY_BYTES = 1 << 28  # most bytes of dense (cases x training users) similarities held at once


class UserKNN(Recommender):
    name = "userknn"
    description = "users with the most similar histories (any domain) and their target items"
    uses_history = True
    defaults = {"neighbours": None}
    ranges = {"neighbours": COUNT}
    search = {"neighbours": Space(10, 1000, log=True)}
    help = {"neighbours": "most similar training users whose target items are summed; empty: chosen on validation, "
                          "separately for warm and cold users"}

    def fit(self, scenario, progress=None):
        self._build(scenario)
        self.neighbours_ = {s: self._choose(scenario, s) for s in CASE_SEGMENTS}
        if progress:
            progress({"stage": "settings chosen on validation",
                      **{f"{s} neighbours": k for s, k in self.neighbours_.items()}}, 1.0)
        return self

    def _build(self, scenario):
        """The unit rows of the training users that have target items (the only users who can recommend one), and
        their target items."""
        x = scenario.train_matrix()
        n = self.n_target_ = scenario.n_target
        self.candidates_ = np.flatnonzero(np.diff(x[:, :n].tocsr().indptr) > 0)
        rows = x[self.candidates_]
        self.unit_users_ = l2_normalised(rows).T.tocsr()  # (items x candidates): one product gives the cosines
        self.target_items_ = rows[:, :n].tocsr()

    def _choose(self, scenario, segment: str) -> int:
        """The neighbourhood size with the best NDCG@10 on the segment's validation cases (of equals, the smaller)."""
        if self.params["neighbours"] is not None:
            return int(self.params["neighbours"])
        cases = validation_cases(scenario, segment)
        totals = dict.fromkeys(NEIGHBOURS, 0.0)
        step = min(block_rows(self.n_target_), self._rows_at_once())
        scores = torch.empty(min(step, len(cases)), self.n_target_)
        for lo in range(0, len(cases), step):
            rows = np.arange(lo, min(lo + step, len(cases)))
            batch = scenario.batch(cases, rows)
            nearest = self._nearest(batch.history, batch.users, max(NEIGHBOURS))
            for k in NEIGHBOURS:
                self._add_items(scores[: len(rows)].zero_(), *nearest, np.full(len(rows), k))
                totals[k] += ndcg_sum(mask_known(scores[: len(rows)], cases, rows), cases, rows)
        return max(NEIGHBOURS, key=lambda k: (totals[k], -k))

    def score(self, batch, out=None):
        history, users = batch.history.cpu(), batch.users.cpu()
        cold = ~((history >= 0) & (history < self.n_target_)).any(1).numpy()
        k = np.where(cold, self.neighbours_["cold"], self.neighbours_["warm"])
        out = torch.zeros(len(history), self.n_target_) if out is None else out.zero_()
        step = self._rows_at_once()
        for lo in range(0, len(history), step):
            rows = slice(lo, lo + step)
            self._add_items(out[rows], *self._nearest(history[rows], users[rows], int(k[rows].max())), k[rows])
        return out

    def _rows_at_once(self) -> int:
        """How many cases' dense cosines to all candidates stay within SIMILARITY_BYTES."""
        return max(1, SIMILARITY_BYTES // (4 * max(len(self.candidates_), 1)))

    def _nearest(self, history: torch.Tensor, users: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, width) cosines and candidate positions of each history's nearest candidates, nearest first; the
        case's own user is never among them (their training items are already theirs)."""
        items = history_rows(history, self.unit_users_.shape[0])
        items.data[:] = 1.0  # an item seen twice counts once, as in the training rows
        similarity = torch.from_numpy(product(l2_normalised(items), self.unit_users_).toarray())
        users = users.numpy()
        me = np.minimum(np.searchsorted(self.candidates_, users), len(self.candidates_) - 1)
        own = np.flatnonzero((users >= 0) & (self.candidates_[me] == users))
        similarity[own, me[own]] = 0.0
        # of equal cosines the earlier candidate, whatever the width: a neighbourhood must not depend on how many
        # neighbours another row asked for (topk breaks ties by the width)
        cosines, columns = similarity.sort(dim=1, descending=True, stable=True)
        return cosines[:, :width], columns[:, :width]

    def _add_items(self, out: torch.Tensor, cosines: torch.Tensor, columns: torch.Tensor, k: np.ndarray) -> None:
        """out += the target items of each row's k[row] nearest candidates, weighted by their cosines."""
        keep = (torch.arange(cosines.shape[1])[None, :] < torch.as_tensor(k)[:, None]) & (cosines > 0)
        rows, slots = torch.nonzero(keep, as_tuple=True)
        weights = sparse.csr_matrix((cosines[rows, slots].numpy(), (rows.numpy(), columns[rows, slots].numpy())),
                                    shape=(len(out), len(self.candidates_)))
        add_sparse(out, product(weights, self.target_items_))

    def state(self):
        return {"neighbours": torch.tensor([self.neighbours_[s] for s in CASE_SEGMENTS])}

    def load_state(self, scenario, tensors):
        self._build(scenario)
        self.neighbours_ = dict(zip(CASE_SEGMENTS, map(int, tensors["neighbours"].tolist())))
        return self

