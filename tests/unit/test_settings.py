"""Settings out of range, scenarios that cannot be evaluated and faults of ours: refused up front, in one paragraph,
with nothing left behind."""
import pandas as pd
import pytest

from engine import __main__ as cli
from engine import api
from engine.errors import CrossLensError
from engine.request import TrainRequest, make_model
from tests.conftest import make_domains


@pytest.mark.parametrize("model, settings, says", [
    ("lmkg", {"dim": -5}, "lmkg setting dim must be at least 1; got -5"),
    ("lmkg", {"lr": float("nan")}, "lr must be a finite number"),
    ("lmkg", {"dim": 30, "heads": 4}, "must be a multiple of heads"),
    ("lmkg", {"dropout": 1.0}, "dropout must be at least 0 and at most 0.95"),
    ("lmkg", {"use_text": "no"}, "use_text must be a switch"),
    ("bpr", {"batch_size": 0}, "batch_size must be at least 1"),
    ("bpr", {"dim": 8.5}, "dim must be a whole number"),
    ("itemknn", {"neighbours": -1}, "neighbours must be at least 1"),
    ("emcdr", {"map_loss": "l1"}, "map_loss must be one of 'bpr', 'mse'"),
    ("content", {"decay": 0}, "decay must be above 0 and at most 1"),
])
def test_a_setting_out_of_its_range_or_of_the_wrong_type_is_refused(model, settings, says):
    with pytest.raises(CrossLensError, match=says.replace("(", r"\(").replace(")", r"\)")):
        make_model(model, settings)


def test_every_default_lies_in_its_range():
    for name, about in api.models().items():
        make_model(name, about["defaults"])


def test_the_cli_refuses_a_bad_setting_in_one_line_before_any_run_exists(tmp_path, ingested_workspace, domains,
                                                                           capsys):
    ws = ingested_workspace(tmp_path / "ws", domains)
    for bad in (["--set", "dim=-5"], ["--set", "lr=abc"], ["--set", "lr=nan"], ["--epochs", "0"],
                ["--sampled", "0"], ["--background", "--epochs", "-3"]):
        code = cli.main(["train", "--source", "src", "--target", "tgt", "--model", "lmkg", *bad,
                         "--workspace", str(ws)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (bad, err)
    assert api.runs(ws) == [] and api.jobs(ws) == []


def test_a_target_too_small_to_rank_or_without_test_cases_is_refused_before_training(tmp_path, ingested_workspace):
    tables = make_domains(n_users=40, n_items=10)  # ten target items: lists of 20 cannot be ranked
    ws = ingested_workspace(tmp_path / "small", tables)
    with pytest.raises(CrossLensError, match="has 10 items; .* at least 20 items"):
        api.train("src", "tgt", "pop", workspace=ws)
    once = make_domains(n_users=40)
    inter, items = once["tgt"]
    once["tgt"] = (inter.drop_duplicates("user_id"), items)  # every target user has one interaction ...
    ws = ingested_workspace(tmp_path / "once", once)
    with pytest.raises(CrossLensError, match="has no validation case"):
        api.train("src", "tgt", "pop", cold_fraction=0.0, workspace=ws)  # ... and none is held out cold
    assert api.runs(tmp_path / "small") == [] and api.runs(ws) == []
    apart = make_domains(n_users=60)
    inter, items = apart["src"]
    apart["src"] = (inter.assign(user_id="other-" + inter["user_id"]), items)  # no user in both domains
    ws = ingested_workspace(tmp_path / "apart", apart)
    with pytest.raises(CrossLensError, match="share no user"):
        api.train("src", "tgt", "pop", workspace=ws)
    assert api.runs(ws) == [] and api.scenario_preview(["src"], "tgt", workspace=ws)["shared_users"] == 0


def test_a_fault_of_ours_is_one_paragraph_with_the_traceback_in_a_log(tmp_path, monkeypatch, capsys):
    def broken(workspace=None):
        raise RuntimeError("the registry answered nonsense")  # a fault injected where no input can cause one
    monkeypatch.setattr(api, "datasets", broken)
    code = cli.main(["datasets", "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "RuntimeError: the registry answered nonsense" in err
    logs = list((tmp_path / "ws" / "logs").glob("cli-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()


def test_request_checks_run_before_the_job_exists(tmp_path, ingested_workspace, domains):
    ws = ingested_workspace(tmp_path / "ws", domains)
    with pytest.raises(CrossLensError, match="dim must be at least 1"):
        api.start_training("src", "tgt", "lmkg", settings={"dim": 0}, workspace=ws)
    with pytest.raises(CrossLensError, match="epochs must be"):
        TrainRequest("src", "tgt", "bpr", epochs=0).check(ws)
    assert api.jobs(ws) == []
    assert pd.DataFrame(api.runs(ws)).empty
