"""BPR matrix factorisation on the target domain only: the single-domain reference.

Cold-start users have no target interactions, so their factors stay untrained: their scores are near random,
which is what a single-domain model can do for them.
"""
from __future__ import annotations

import numpy as np
import torch

from ..train import fit_module, sample_negatives, shuffled_batches
from .base import ItemSpace, Recommender
from .mf import MF_DEFAULTS, MF_RANGES, MF_SEARCH, Factorisation


class BPR(ItemSpace, Recommender):
    name = "bpr"
    description = "matrix factorisation on the target domain"
    defaults = dict(MF_DEFAULTS)
    ranges = MF_RANGES
    search = MF_SEARCH
    all_domains = False  # which interactions train the factors

    def _n_items(self, scenario):
        return scenario.n_items if self.all_domains else scenario.n_target

    def _module(self, scenario):
        return Factorisation(scenario.n_users, self._n_items(scenario), self.params["dim"],
                             self.params["reg"]).to(self.device)

    def fit(self, scenario, progress=None):
        self._seed()
        t = scenario.train if self.all_domains else scenario.train[scenario.train["domain"] == 0]
        self.module_, self.n_target_ = self._module(scenario), scenario.n_target
        batches = bpr_batches(scenario, t, self.params["batch_size"], self.device,
                              self.params.get("target_weight"))
        self.log_ = fit_module(self.module_, batches, self, scenario, self.params, progress)
        return self

    def score(self, batch, out=None):
        return self.module_.scores(self.module_.users(batch.users), self.n_target_, out)

    def state(self):
        return dict(self.module_.state_dict())

    def item_vectors(self):
        return self.module_.items.weight.detach()

    def user_vectors(self, batch):
        return self.module_.users(batch.users)

    def load_state(self, scenario, tensors):
        self.module_, self.n_target_ = self._module(scenario), scenario.n_target
        self.module_.load_state_dict(tensors)
        return self


def bpr_batches(scenario, interactions, batch_size, device, target_weight=None):
    """An epoch of (user, positive, negative[, weight]) batches; each negative comes from its positive's own domain.

    With target_weight, each pair also carries a loss weight: target_weight for target pairs, 1 for source pairs.
    """
    t = interactions.drop_duplicates(["user", "item"])
    starts = np.array([scenario.domain_range[d][0] for d in scenario.domains])
    sizes = np.array([scenario.domain_range[d][1] - scenario.domain_range[d][0] for d in scenario.domains])
    dom = t["domain"].to_numpy()
    users, items = (torch.as_tensor(t[c].to_numpy(), device=device) for c in ("user", "item"))

    def batches(rng):
        for idx in shuffled_batches(rng, len(users), batch_size):
            neg = sample_negatives(rng, starts[dom[idx]], sizes[dom[idx]])
            rows = torch.as_tensor(idx, device=device)
            batch = (users[rows], items[rows], torch.as_tensor(neg, device=device))
            if target_weight is not None:
                batch += (torch.as_tensor(np.where(dom[idx] == 0, target_weight, 1.0), dtype=torch.float32,
                                          device=device),)
            yield batch
    return batches
