"""Most popular target items, the same list for everyone."""
from __future__ import annotations

import torch

from .base import Recommender


class Pop(Recommender):
    name = "pop"
    description = "most popular target items"

    def fit(self, scenario, progress=None):
        self.popularity_ = torch.as_tensor(scenario.item_popularity(), dtype=torch.float32)
        return self

    def score(self, batch, out=None):
        if out is None:
            return self.popularity_.repeat(len(batch.users), 1)  # a copy: callers mask scores in place
        return out.copy_(self.popularity_.expand_as(out))

    def state(self):
        return {"popularity": self.popularity_}

    def load_state(self, scenario, tensors):
        self.popularity_ = tensors["popularity"]
        return self
