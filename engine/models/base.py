"""The interface every model implements (RecBole-style methods, scikit-learn-style construction), and the two
capabilities some models add, declared by inheriting them and checked by type:

- Recommender (every model): fit, prepare, score, state, load_state / from_state;
- ItemSpace: item_vectors and user_vectors in one space (embedding maps, engine.maps);
- Explainable: scores from the history and re-scores perturbed inputs (engine.explain).

A model is rebuilt from its parameters plus the scenario it was fitted on; everything learned lives in
`state()` tensors, saved as safetensors. Ranking, masking and metrics live outside models (engine.evaluate).
After prepare() (or the first score()), scoring only reads the model: one loaded model serves many threads.
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import default_device
from ..scenario import Batch, Scenario
from . import settings


class Recommender:
    name = "base"
    uses_history = False      # True: scores from the history in the batch (works for cold users)
    description = ""          # one line for the model catalogue
    defaults: dict = {}
    ranges: dict = {}         # setting -> settings.Range it must lie in (its type is its default's)
    help: dict = {}           # setting -> one line for analysts (settings.COMMON_HELP has the shared ones)
    post_training: tuple = ()  # settings used only after fitting: api.derive may change them on a trained run
    search: dict = {}         # setting -> settings.Space engine.tune draws it from (none: the model is not tuned)

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"model '{self.name}' has no setting {', '.join(sorted(unknown))}; "
                             f"its settings are: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params = {**self.defaults, **params}
        settings.check(self.name, self.defaults, self.ranges, self.params)
        self.device = torch.device(default_device())

    @classmethod
    def setting_help(cls) -> dict[str, str]:
        """Every setting's line of help, '' where there is none (a test keeps that from happening)."""
        return {k: cls.help.get(k) or settings.COMMON_HELP.get(k, "") for k in cls.defaults}

    def fit(self, scenario: Scenario, progress=None) -> "Recommender":
        raise NotImplementedError

    def _seed(self) -> None:
        """Seed torch before any module is built, so initial weights follow the run's seed too."""
        torch.manual_seed(self.params.get("seed", 0))

    def prepare(self) -> None:
        """Called once before a round of score() calls (an evaluation): precompute what every batch shares."""

    def score(self, batch: Batch, out: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, n_target) scores of every target item; higher is better. Callers mask the result in place: it is
        a new tensor, or `out` when given (a float buffer of that shape on the model's device, which an evaluation
        reuses batch after batch: a fresh block of a large catalogue costs about as much in page faults as a pass
        over it) and the model writes its scores into it."""
        raise NotImplementedError

    def state(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state(self, scenario: Scenario, tensors: dict[str, torch.Tensor]) -> "Recommender":
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: dict, scenario: Scenario, tensors: dict[str, torch.Tensor]) -> "Recommender":
        return cls(**params).load_state(scenario, tensors)


class ItemSpace:
    """A model whose items (and users) live in one vector space."""

    def item_vectors(self) -> torch.Tensor:
        """Learned item embeddings, row i = global item i (the target block, or all items)."""
        raise NotImplementedError

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        """(batch, dim) the batch's target-domain user vectors, in the space of the target items' vectors."""
        raise NotImplementedError


class Explainable:
    """A model that scores from the history and can re-score one item under perturbations of its input."""

    def score_perturbed(self, history: torch.Tensor, item: int, keep_history: torch.Tensor,
                        keep_entities: torch.Tensor | None = None) -> torch.Tensor:
        """(P,) scores of target item `item` under P perturbations: copy p keeps the positions of `history` (L,)
        where keep_history[p] is True, and the item's entity slots where keep_entities[p] is True."""
        raise NotImplementedError

    def read_history(self, history: np.ndarray) -> np.ndarray:
        """The items of a history (global indices, oldest first) that the model reads: the explained features."""
        return history

    def entity_slots(self, item: int) -> list[tuple[str, str]]:
        """(relation, entity) of each knowledge-graph slot the item's score attends over, in slot order (each
        slot's removal is a feature); none by default."""
        return []

    def entity_count(self, item: int) -> int:
        return len(self.entity_slots(item))


def explainable(model_class) -> bool:
    """Whether a model's recommendations can be explained (engine.explain)."""
    return issubclass(model_class, Explainable)


def learns_vectors(model_class) -> bool:
    """Whether a model's runs have an item space to map (engine.maps)."""
    return issubclass(model_class, ItemSpace)
