"""A train request: typed settings, the checks before any run exists, and its round trip through a job's row."""
import pytest

from engine import api
from engine.errors import CrossLensError
from engine.request import TrainRequest, parse_settings
from engine.store import open_workspace


def test_settings_are_read_as_their_defaults_types():
    assert parse_settings(["dim=32", "lr=1", "use_text=false", "use_kg=0", "encoder=minilm"], "lmkg") == \
        {"dim": 32, "lr": 1.0, "use_text": False, "use_kg": False, "encoder": "minilm"}
    assert isinstance(parse_settings(["lr=1"], "lmkg")["lr"], float)
    assert parse_settings(["power=0.5"], "content") == {"power": 0.5}  # unset by default: chosen on validation


@pytest.mark.parametrize("pair, says", [("dim=abc", "dim must be a whole number"), ("dim=0.5", "whole number"),
                                        ("lr=fast", "lr must be a number"), ("use_text=maybe", "is a switch"),
                                        ("dim", "not KEY=VALUE")])
def test_a_setting_of_the_wrong_type_is_refused_with_its_name(pair, says):
    with pytest.raises(CrossLensError, match=says):
        parse_settings([pair], "lmkg")


def test_without_a_model_settings_are_numbers_where_they_can_be():
    assert parse_settings(["threads=1", "time_budget=0.5", "name=x"]) == {"threads": 1, "time_budget": 0.5,
                                                                           "name": "x"}


def test_a_request_survives_its_round_trip_through_the_registry():
    request = TrainRequest("arts, books", "office", "lmkg", seed=3, epochs=2, settings={"use_kg": False},
                           sampled=100, maps=False)
    assert request.source == ("arts", "books")
    assert TrainRequest.from_dict(request.to_dict()) == request
    assert request.model_settings() == {"use_kg": False, "epochs": 2}


@pytest.mark.parametrize("change, says", [({"epochs": 0}, "epochs must be"), ({"sampled": -1}, "sampled must be"),
                                          ({"seed": -2}, "seed must be"), ({"model": "svd"}, "unknown model"),
                                          ({"target": "books"}, "no dataset named 'books'"),
                                          ({"settings": {"colour": 1}}, "no setting colour")])
def test_a_request_that_cannot_work_is_refused_and_leaves_no_run(tmp_path, ingested_workspace, domains, change, says):
    ws = ingested_workspace(tmp_path / "ws", domains)
    request = TrainRequest(**{"source": "src", "target": "tgt", "model": "bpr", **change})
    with pytest.raises(CrossLensError, match=says):
        request.check(ws)
    with pytest.raises(CrossLensError, match=says):
        api.train(**{k: v for k, v in request.to_dict().items()}, workspace=ws)
    assert api.runs(ws) == []


def test_a_workspace_is_opened_once_per_process(tmp_path):
    store = open_workspace(tmp_path / "ws")
    assert open_workspace(tmp_path / "ws") is store and open_workspace(store) is store
    assert open_workspace(str(tmp_path / "ws" / ".." / "ws")) is store  # the same folder, however it is named
    assert store.text_cache == store.root / "text_cache"


def test_an_encoder_is_the_bundled_one_or_a_folder_inside_the_workspace(tmp_path, ingested_workspace, domains):
    ws = ingested_workspace(tmp_path / "ws", domains)
    for outside in ("/etc", "/no/such/folder", str(tmp_path), "../elsewhere"):
        with pytest.raises(CrossLensError, match="inside the workspace") as err:
            TrainRequest("src", "tgt", "lmkg", settings={"encoder": outside}).check(ws)
        assert "exist" not in str(err.value)  # says nothing of what is on the machine
    TrainRequest("src", "tgt", "lmkg", settings={"encoder": "minilm"}).check(ws)
    inside = TrainRequest("src", "tgt", "content", settings={"encoder": str(ws / "encoders" / "mine")})
    inside.check(ws)  # allowed here; whether it is a model folder is the encoder's to say when it loads
