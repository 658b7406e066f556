"""Presets change the epochs and patience; a request's time estimate is read from the runs this machine finished."""
import pytest

from engine import api
from engine.estimate import estimate
from engine.models import MODELS
from engine.models.settings import preset
from engine.request import TrainRequest


def test_presets_scale_the_epochs_and_patience_and_leave_closed_form_models_alone():
    bpr = MODELS["bpr"].defaults
    assert preset("quick", bpr) == {"epochs": round(bpr["epochs"] / 4), "patience": 2}
    assert preset("thorough", bpr) == {"epochs": 2 * bpr["epochs"], "patience": 2 * bpr["patience"]}
    assert preset("default", bpr) == {} and preset("quick", MODELS["itemknn"].defaults) == {}
    for name, cls in MODELS.items():  # every preset builds a valid model
        for chosen in ("quick", "thorough"):
            cls(**preset(chosen, cls.defaults))
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("fast", bpr)


def test_an_estimate_comes_from_the_finished_runs_of_the_model(tmp_path, domains, ingested_workspace):
    ws = ingested_workspace(tmp_path / "ws", domains)
    request = TrainRequest("src", "tgt", "bpr", epochs=3, settings={"patience": 5})
    assert estimate(request, ws) is None  # nothing measured yet
    run = api.train("src", "tgt", "bpr", epochs=3, settings={"patience": 5}, workspace=ws)
    guess = estimate(request, ws)
    assert guess["runs"] == 1 and guess["same_domains"]
    epochs = api.run_curves(run["id"], ws)["seconds"]
    assert len(epochs) == 3
    per_epoch = epochs.mean()  # the rest of the time, then the epochs it ran at their mean time
    assert guess["seconds"] == pytest.approx(run["train_seconds"] - epochs.sum() + run["eval_seconds"] + 3 * per_epoch)
    longer = estimate(TrainRequest("src", "tgt", "bpr", epochs=9), ws)
    assert longer["at_most_seconds"] - guess["at_most_seconds"] == pytest.approx(6 * per_epoch)
    assert longer["seconds"] == pytest.approx(guess["seconds"])  # the measured run trained 3 epochs
    assert estimate(TrainRequest("src", "tgt", "cmf"), ws) is None  # another model is not a measure
