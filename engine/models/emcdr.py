"""EMCDR (Man et al., IJCAI 2017): factorise each domain, then learn a mapping from a user's source factor to
their target factor on users present in both; cold-start users are scored through the mapped source factor.

`map_loss="mse"` regresses the target factor as in the paper; the default `"bpr"` trains the mapping to rank the
users' own target items (the task-oriented objective of TMCDR/PTUPCDR), which regresses less to the mean user.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..train import fit_module, shuffled_batches
from .base import ItemSpace, Recommender
from .bpr import bpr_batches
from .mf import MF_DEFAULTS, MF_RANGES, MF_SEARCH, Factorisation
from .settings import COUNT, POSITIVE, Range, Space


class TwoDomainFactors(nn.Module):
    """Separate user and item factors for the source domain(s) and the target domain, trained side by side."""

    def __init__(self, n_users, n_items, n_target, dim, reg):
        super().__init__()
        self.source = Factorisation(n_users, n_items, dim, reg)
        self.target = Factorisation(n_users, n_target, dim, reg)

    def calculate_loss(self, user, pos, neg):
        t = pos < self.target.items.num_embeddings  # target items occupy the first block of the index
        loss = 0.0
        if t.any():
            loss = loss + self.target.calculate_loss(user[t], pos[t], neg[t])
        if (~t).any():
            loss = loss + self.source.calculate_loss(user[~t], pos[~t], neg[~t])
        return loss


class Mapping(nn.Module):
    """MLP from source user factors to target user factors, trained against the frozen target factors."""

    def __init__(self, factors: TwoDomainFactors, hidden: int, loss: str):
        super().__init__()
        dim = factors.source.users.embedding_dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.factors, self.loss = factors, loss

    def forward(self, users):
        return self.net(self.factors.source.users(users))

    def calculate_loss(self, user, pos=None, neg=None):
        if self.loss == "mse":
            return (self(user) - self.factors.target.users(user)).pow(2).sum(-1).mean()
        return self.factors.target.pair_loss(self(user), pos, neg)


class EMCDR(ItemSpace, Recommender):
    name = "emcdr"
    description = "factorisation per domain + a learned source-to-target mapping"
    defaults = {**MF_DEFAULTS, "reg": 0.01, "map_hidden": 128, "map_lr": 0.001, "map_epochs": 60, "map_patience": 4,
                "map_loss": "bpr"}
    ranges = {**MF_RANGES, "map_hidden": COUNT, "map_lr": POSITIVE, "map_epochs": COUNT, "map_patience": COUNT,
              "map_loss": Range(choices=("bpr", "mse"))}
    search = {**MF_SEARCH, "map_hidden": Space(32, 512, log=True), "map_lr": Space(1e-4, 1e-2, log=True)}
    help = {"map_hidden": "hidden units of the network that maps a user's source factor to a target factor",
            "map_lr": "learning rate of that mapping", "map_epochs": "at most this many epochs of the mapping",
            "map_patience": "stop the mapping after this many epochs without a better cold-user validation NDCG@10",
            "map_loss": "what the mapping learns: 'bpr' ranks the user's target items, 'mse' regresses the target "
                        "factor (the paper's)"}

    def _modules(self, scenario):
        p = self.params
        factors = TwoDomainFactors(scenario.n_users, scenario.n_items, scenario.n_target, p["dim"], p["reg"])
        return factors.to(self.device), Mapping(factors, p["map_hidden"], p["map_loss"]).to(self.device)

    def fit(self, scenario, progress=None):
        self._seed()
        self.factors_, self.mapping_ = self._modules(scenario)
        train = scenario.train
        self.has_target_ = torch.as_tensor(_users_with(train, scenario.n_users, target=True), device=self.device)
        mapping, self.mapping_ = self.mapping_, None  # score warm users only while factorising
        log = fit_module(self.factors_, bpr_batches(scenario, train, self.params["batch_size"], self.device),
                         self, scenario, self.params, progress, stage="factorise")
        self.log_ = {"factorise": log, "map": self.fit_mapping(scenario, mapping, progress)}
        return self

    def fit_mapping(self, scenario, mapping, progress=None) -> dict:
        """Learn the mapping on users with factors in both domains; early-stopped on cold validation users."""
        p, train = self.params, scenario.train
        self.factors_.requires_grad_(False)
        self.mapping_ = mapping
        both = self.has_target_.cpu().numpy() & _users_with(train, scenario.n_users, target=False)
        if p["map_loss"] == "mse":
            users = torch.as_tensor(np.flatnonzero(both), device=self.device)

            def batches(rng):
                for idx in shuffled_batches(rng, len(users), p["batch_size"]):
                    yield (users[torch.as_tensor(idx, device=self.device)],)
        else:
            target_pairs = train[(train["domain"] == 0) & both[train["user"]]]
            batches = bpr_batches(scenario, target_pairs, p["batch_size"], self.device)
        map_params = {**p, "lr": p["map_lr"], "epochs": p["map_epochs"], "patience": p["map_patience"]}
        return fit_module(mapping, batches, self, scenario, map_params, progress, stage="map", valid_segment="cold")

    def user_vectors(self, batch):
        """A warm user's own target factor; a cold user's source factor mapped into the target space."""
        users = batch.users
        own = self.factors_.target.users(users)
        if self.mapping_ is None:
            return own
        return torch.where(self.has_target_[users, None], own, self.mapping_(users))

    def score(self, batch, out=None):
        return self.factors_.target.scores(self.user_vectors(batch), self.factors_.target.items.num_embeddings, out)

    def item_vectors(self):
        """Target items from the target factors, source items from the source factors (two spaces, by design)."""
        target = self.factors_.target.items.weight.detach()
        return torch.cat([target, self.factors_.source.items.weight.detach()[len(target):]])

    def state(self):
        return {**{f"mapping.{k}": v for k, v in self.mapping_.state_dict().items()}, "has_target": self.has_target_}

    def load_state(self, scenario, tensors):
        self.factors_, self.mapping_ = self._modules(scenario)
        self.mapping_.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("mapping.")})
        self.has_target_ = tensors["has_target"].to(self.device)
        return self


def _users_with(train, n_users: int, target: bool) -> np.ndarray:
    """Boolean per user: has training interactions in the target (target=True) or in a source domain."""
    mask = np.zeros(n_users, bool)
    mask[train.loc[(train["domain"] == 0) == target, "user"]] = True
    return mask
