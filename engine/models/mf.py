"""Matrix factorisation trained with the BPR loss: the building block of bpr, cmf and emcdr."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .settings import COUNT, NON_NEGATIVE, POSITIVE, SEED, Space

MF_DEFAULTS = {"dim": 64, "lr": 0.005, "reg": 0.03, "epochs": 40, "patience": 4, "batch_size": 4096, "seed": 0}
MF_RANGES = {"dim": COUNT, "lr": POSITIVE, "reg": NON_NEGATIVE, "epochs": COUNT, "patience": COUNT,
             "batch_size": COUNT, "seed": SEED}
MF_SEARCH = {"dim": Space(16, 256, log=True), "lr": Space(1e-3, 5e-2, log=True), "reg": Space(1e-4, 0.3, log=True)}


class Factorisation(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, reg: float):
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)  # item popularity, so factors only model the taste beyond it
        nn.init.zeros_(self.bias.weight)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        self.reg = reg

    def calculate_loss(self, user, pos, neg, weight=None):
        return self.pair_loss(self.users(user), pos, neg, weight)

    def pair_loss(self, u, pos, neg, weight=None):
        """BPR loss of user vectors u preferring item pos over item neg (optionally weighted per pair)."""
        p, n = self.items(pos), self.items(neg)
        margin = (u * (p - n)).sum(-1) + self.bias(pos).squeeze(-1) - self.bias(neg).squeeze(-1)
        loss = -F.logsigmoid(margin)
        loss = loss.mean() if weight is None else (weight * loss).sum() / weight.sum()
        penalty = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(u)
        return loss + self.reg * penalty

    def scores(self, user_vectors: torch.Tensor, n_items: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the first n_items items (the target block) for the given user vectors (into out if given)."""
        return torch.addmm(self.bias.weight[:n_items, 0], user_vectors, self.items.weight[:n_items].T, out=out)
