import numpy as np
import pytest
import torch

from engine import evaluate
from engine.models import MODELS
from engine.models.base import Recommender

SMALL = {"dim": 16, "epochs": 30, "patience": 5, "batch_size": 256, "lr": 0.01}
SETTINGS = {"pop": {}, "itemknn": {}, "userknn": {}, "content": {}, "bpr": SMALL, "cmf": SMALL,
            "emcdr": {**SMALL, "map_epochs": 30},
            "lmkg": {**SMALL, "epochs": 20, "patience": 100, "batch_size": 32, "negatives": 32, "max_history": 20,
                     "lr": 0.003, "temperature": 0.1, "dropout": 0.0}}


class RandomScores(Recommender):
    """The floor every model must clear: uniform random scores."""
    name = "random"

    def fit(self, scenario, progress=None):
        self.n_target_ = scenario.n_target
        self.generator_ = torch.Generator().manual_seed(0)
        return self

    def score(self, batch, out=None):  # a new tensor each time: the contract lets a model ignore `out`
        return torch.rand(len(batch.users), self.n_target_, generator=self.generator_)


@pytest.fixture(scope="module")
def fitted(small_scenario):
    return {name: MODELS[name](**SETTINGS[name]).fit(small_scenario) for name in MODELS}


@pytest.fixture(scope="module")
def random_ndcg(small_scenario):
    return evaluate.evaluate(RandomScores().fit(small_scenario), small_scenario).summary


@pytest.mark.parametrize("name", list(MODELS))
def test_model_beats_random(name, fitted, random_ndcg, small_scenario):
    summary = evaluate.evaluate(fitted[name], small_scenario).summary
    assert summary["all"]["ndcg@10"] > 1.5 * random_ndcg["all"]["ndcg@10"], summary["all"]


@pytest.mark.parametrize("name", ["itemknn", "userknn", "content", "cmf", "emcdr"])
def test_cross_domain_models_serve_cold_users(name, fitted, random_ndcg, small_scenario):
    # cold users' target taste follows their source taste: a cross-domain model must find it
    summary = evaluate.evaluate(fitted[name], small_scenario).summary
    assert summary["cold"]["ndcg@10"] > 1.5 * random_ndcg["cold"]["ndcg@10"], summary["cold"]


@pytest.mark.parametrize("name", list(MODELS))
def test_state_round_trip_gives_identical_scores(name, fitted, small_scenario):
    model = fitted[name]
    again = MODELS[name].from_state(model.params, small_scenario, {k: v.clone() for k, v in model.state().items()})
    batch = small_scenario.batch(small_scenario.test, np.arange(len(small_scenario.test)))
    with torch.no_grad():
        assert torch.equal(model.score(batch), again.score(batch))


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_are_a_new_tensor_the_caller_may_mask(name, fitted, small_scenario):
    """Evaluation and delivery mask known items in place; that must not reach the model (pop once returned a view
    of its popularity, and a one-row batch masked it for every later user)."""
    batch = small_scenario.batch(small_scenario.test, np.arange(1))
    with torch.no_grad():
        first = fitted[name].score(batch)
        before = first.clone()
        first.fill_(-1.0)
        assert torch.equal(fitted[name].score(batch), before)


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_written_into_a_reused_buffer_are_the_scores(name, fitted, small_scenario):
    """Evaluation hands every batch the same buffer (score's out): whatever it held before must not show through,
    in a batch of warm and cold cases alike."""
    cases = small_scenario.test
    assert {"warm", "cold"} <= set(cases.segment)
    batch = small_scenario.batch(cases, np.arange(len(cases)))
    with torch.no_grad():
        fresh = fitted[name].score(batch)
        buffer = torch.full((len(cases), small_scenario.n_target), torch.nan)
        written = fitted[name].score(batch, out=buffer)
    assert torch.allclose(written, fresh, rtol=1e-5, atol=1e-5)


def test_unknown_setting_is_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="dim"):
        MODELS["bpr"](dimension=3)


def test_training_is_deterministic_for_a_seed(small_scenario):
    a = MODELS["bpr"](**SMALL, seed=1).fit(small_scenario).state()
    b = MODELS["bpr"](**SMALL, seed=1).fit(small_scenario).state()
    assert all(torch.equal(a[k], b[k]) for k in a)
