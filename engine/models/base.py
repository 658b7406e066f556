"""The interface every model implements (RecBole-style methods, scikit-learn-style construction).

A model is rebuilt from its parameters plus the scenario it was fitted on; everything learned lives in
`state()` tensors, saved as safetensors. Ranking, masking and metrics live outside models (engine.evaluate).
"""
from __future__ import annotations

import torch

from ..scenario import Batch, Scenario


class Recommender:
    name = "base"
    uses_history = False      # True: scores from the history in the batch (works for cold users, explainable)
    defaults: dict = {}
    post_training: tuple = ()  # settings used only after fitting: api.derive may change them on a trained run

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"model '{self.name}' has no setting {', '.join(sorted(unknown))}; "
                             f"its settings are: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params = {**self.defaults, **params}
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def fit(self, scenario: Scenario, progress=None) -> "Recommender":
        raise NotImplementedError

    def _seed(self) -> None:
        """Seed torch before any module is built, so initial weights follow the run's seed too."""
        torch.manual_seed(self.params.get("seed", 0))

    def prepare(self) -> None:
        """Called once before a round of score() calls (an evaluation): precompute what every batch shares."""

    def score(self, batch: Batch) -> torch.Tensor:
        """(batch, n_target) scores of every target item; higher is better."""
        raise NotImplementedError

    def state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor | None:
        """Learned item embeddings, row i = global item i (the target block, or all items); None for models
        without any (pop, itemknn)."""
        return None

    def load_state(self, scenario: Scenario, tensors: dict[str, torch.Tensor]) -> "Recommender":
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: dict, scenario: Scenario, tensors: dict[str, torch.Tensor]) -> "Recommender":
        return cls(**params).load_state(scenario, tensors)


def explainable(model_class) -> bool:
    """Whether a model's recommendations can be explained: it scores from the history and can re-score perturbed
    inputs (engine.explain)."""
    return model_class.uses_history and hasattr(model_class, "score_perturbed")


def learns_vectors(model_class) -> bool:
    """Whether a model's runs have an item space to map (engine.maps), known from the class alone."""
    return model_class.item_vectors is not Recommender.item_vectors
