"""Tuning: the test split is read once, after the choice; every trial is a run on validation; the defaults are
the first trial, so the best is never worse on validation; bad requests are refused before anything is stored."""
import pytest

from engine import evaluate, tune
from engine.errors import CrossLensError
from engine.models import MODELS
from engine.request import TrainRequest
from engine.store import Store, write_json


@pytest.fixture(scope="module")
def studied(tmp_path_factory, domains, ingested_workspace, request):
    """A 4-trial study of bpr on the generated domains, with every evaluation's split recorded in order."""
    ws = ingested_workspace(tmp_path_factory.mktemp("tune-ws"), domains)
    splits, real = [], evaluate.evaluate
    monkeypatch = pytest.MonkeyPatch()
    request.addfinalizer(monkeypatch.undo)

    def recording(model, scenario, split="test", **options):
        splits.append((split, [t["state"] for t in Store(ws).studies()[-1]["trials"]]))
        return real(model, scenario, split, **options)

    monkeypatch.setattr(evaluate, "evaluate", recording)
    record = tune.tune(tune.TuneRequest(TrainRequest("src", "tgt", "bpr", epochs=4), trials=4), ws)
    monkeypatch.undo()
    return ws, record, splits


def test_the_test_split_is_read_once_after_every_trial_has_finished(studied):
    ws, record, splits = studied
    assert [split for split, _ in splits] == ["valid"] * 4 + ["test"]
    _, states_when_tested = splits[-1]
    assert states_when_tested == ["complete"] * 4  # the choice was made before the test cases were ranked
    trials = [r["id"] for r in Store(ws).runs() if r["status"] == "trial"]
    assert sorted(trials) == sorted(t["run"] for t in record["trials"])


def test_every_trial_is_a_run_scored_on_validation_and_the_best_is_tested(studied):
    ws, record, _ = studied
    store = Store(ws)
    for trial in record["trials"]:
        run = store.run(trial["run"])
        assert run["status"] == "trial" and run["config"]["study"] == record["id"]
        assert all(segment.startswith("valid ") for segment in run["metrics"])
        assert trial["value"] == run["metrics"]["valid all"]["ndcg@10"]
        assert {k: run["config"]["params"][k] for k in trial["params"]} == trial["params"]
    tested = store.run(record["test_run"])
    assert tested["status"] == "done" and tested["config"]["trial_run"] == record["best"]["run"]
    assert tested["config"]["params"] == store.run(record["best"]["run"])["config"]["params"]
    assert {"warm", "cold", "all"} <= set(tested["metrics"])


def test_the_defaults_are_the_first_trial_and_the_best_is_at_least_as_good_on_validation(studied):
    _, record, _ = studied
    first = record["trials"][0]
    assert first["params"] == {k: MODELS["bpr"].defaults[k] for k in MODELS["bpr"].search}
    assert record["defaults_value"] == first["value"]
    assert record["best"]["value"] == max(t["value"] for t in record["trials"]) >= record["defaults_value"]
    assert record["status"] == "done" and Store(studied[0]).studies()[-1]["test_run"] == record["test_run"]


def test_a_scenario_without_its_test_split_refuses_every_read_of_it(small_scenario):
    sealed = small_scenario.without_test()
    for read in (lambda: sealed.test.user, lambda: len(sealed.test), lambda: sealed.cases("test").history,
                 lambda: sealed.held_out["user"], lambda: sealed.user_case(0)):
        with pytest.raises(CrossLensError, match="sealed"):
            read()
    assert len(sealed.valid) == len(small_scenario.valid) and sealed.train is small_scenario.train


@pytest.mark.parametrize("change, words", [
    ({"model": "pop"}, "no settings left to tune"),
    ({"settings": {"dim": 8, "lr": 0.01, "reg": 0.0}}, "fixed by the request"),
    ({"trials": 0}, "trials must be"),
    ({"budget_minutes": -1}, "budget"),
    ({"segment": "everyone"}, "segment must be"),
    ({"target": "nowhere"}, "nowhere"),
])
def test_a_request_that_cannot_work_is_refused_before_anything_is_stored(tmp_path, domains, ingested_workspace,
                                                                        change, words):
    ws = ingested_workspace(tmp_path / "ws", domains)
    train = {"source": "src", "target": "tgt", "model": "bpr"}
    train.update({k: v for k, v in change.items() if k in ("model", "settings", "target")})
    study = {k: v for k, v in change.items() if k in ("trials", "budget_minutes", "segment")}
    with pytest.raises(CrossLensError, match=words):
        tune.tune(tune.TuneRequest(TrainRequest(**train), **study), ws)
    assert Store(ws).runs() == [] and Store(ws).studies() == []


def test_every_search_space_holds_the_defaults_and_lies_in_the_settings_ranges():
    for name, cls in MODELS.items():
        for key, space in cls.search.items():
            default = cls.defaults[key]  # None: the model chooses it on validation (trial 1 leaves it so)
            assert default is None or space.holds(default), (name, key)
            allowed = cls.ranges.get(key)
            ends = space.choices or (space.low, space.high)
            kind = type(default if default is not None else ends[0])
            assert allowed is None or all(allowed.holds(kind(v)) for v in ends), (name, key)
            cls(**{key: kind(ends[-1])})  # the far end builds a model


def test_a_study_whose_process_died_is_marked_failed_when_listed(studied):
    ws, record, _ = studied
    store = Store(ws)
    dead = {**record, "id": "20990101-000000-dead00", "status": "running", "process_start": "not-this-process"}
    write_json(dead, store.study_path(dead["id"]))
    listed = {s["id"]: s for s in tune.studies(ws)}
    assert listed[dead["id"]]["status"] == "failed" and "ended before" in listed[dead["id"]]["message"]
    assert listed[record["id"]]["status"] == "done"
    store.study_path(dead["id"]).unlink()
