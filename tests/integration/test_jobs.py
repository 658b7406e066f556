"""Background training jobs: real processes, tracked in the registry, cancellable, and never left 'running'."""
import os
import re
import signal
import time

import pytest

from engine import api
from engine.device import cpu_cores
from engine.errors import CrossLensError
from engine.store import Store


@pytest.fixture
def ws(tmp_path, domain_files):
    for name, (inter, items) in domain_files.items():
        api.ingest(name, inter, items, workspace=tmp_path)
    yield tmp_path
    for job in api.jobs(tmp_path):  # a test that failed half-way leaves no training behind to slow the next ones
        if job["status"] in api.JOB_ACTIVE:
            api.cancel_job(job["id"], tmp_path)


def wait(ws, job_id, until, limit=180):
    deadline = time.time() + limit
    while time.time() < deadline:
        job = api.job(job_id, ws)
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not get there in {limit} s: {api.job(job_id, ws)}\n"
                         f"{api.job_log(job_id, ws)}")


def test_a_job_trains_in_its_own_process_and_reports_its_run_curves_and_log(ws, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the server's own setting: a job gets its share of the cores instead
    monkeypatch.setenv("CROSSLENS_MAX_JOBS", str(cpu_cores()))
    job = api.start_training("src", "tgt", "bpr", epochs=2, settings={"dim": 8}, maps=False, workspace=ws)
    assert job["status"] == "starting" and job["pid"] != os.getpid()
    # the job's row holds its request, which the job's process reads back
    assert job["spec"] == {"kind": "train", "source": ["src"], "target": "tgt", "model": "bpr", "seed": 0,
                           "cold_fraction": 0.2, "epochs": 2, "settings": {"dim": 8}, "sampled": None, "maps": False}
    done = wait(ws, job["id"], lambda j: j["status"] not in ("starting", "running"))
    assert done["status"] == "done" and done["progress"] == 1.0, api.job_log(job["id"], ws)
    run = api.run(done["run_id"], ws)
    assert run["status"] == "done" and run["model"] == "bpr" and run["metrics"]["warm"]["ndcg@10"] > 0
    assert run["config"]["params"]["dim"] == 8 and run["config"]["threads"] == 1
    curves = api.job_curves(job["id"], ws)
    assert curves["epoch"].tolist() == [1, 2] and curves["loss"].notna().all()
    assert "valid_ndcg@10" in api.job_log(job["id"], ws)


def test_cancelling_stops_the_process_and_marks_job_and_run_cancelled(ws):
    job = api.start_training("src", "tgt", "lmkg", epochs=500, settings={"patience": 500, "use_kg": False},
                             maps=False, workspace=ws)
    running = wait(ws, job["id"], lambda j: j["run_id"] is not None and j["status"] == "running")
    assert not api.run(running["run_id"], ws)["config"]["params"]["use_kg"]  # a switch reaches the process
    cancelled = api.cancel_job(job["id"], ws)
    assert cancelled["status"] == "cancelled"
    deadline = time.time() + 5  # gone once our reaper thread has collected its exit status
    with pytest.raises(ProcessLookupError):
        while time.time() < deadline:
            os.kill(running["pid"], 0)
            time.sleep(0.05)
    assert api.run(running["run_id"], ws)["status"] == "cancelled"
    assert api.cancel_job(job["id"], ws)["status"] == "cancelled"  # cancelling twice changes nothing


def test_a_job_whose_process_died_is_marked_failed_with_its_run(ws):
    job = api.start_training("src", "tgt", "lmkg", epochs=500, settings={"patience": 500}, maps=False,
                             workspace=ws)
    running = wait(ws, job["id"], lambda j: j["run_id"] is not None)
    os.killpg(running["pid"], signal.SIGKILL)  # as a crash or a reboot would
    failed = wait(ws, job["id"], lambda j: j["status"] != "running", limit=20)
    assert failed["status"] == "failed" and "ended without reporting" in failed["message"]
    assert api.run(running["run_id"], ws)["status"] == "failed"


def foreground_training(ws):
    """`python -m engine train` in the foreground (no job), once its run exists: (process, run id)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "engine", "train", "--source", "src", "--target", "tgt",
                                "--model", "lmkg", "--epochs", "500", "--set", "patience=500", "--no-maps",
                                "--workspace", str(ws)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not api.runs(ws) and time.time() < deadline:
        time.sleep(0.2)
    assert api.runs(ws), process.stderr.read() if process.poll() is not None else "no run after 120 s"
    return process, api.runs(ws)[0]["id"]


def test_a_foreground_training_killed_shows_failed_and_one_terminated_shows_cancelled(ws):
    process, run_id = foreground_training(ws)
    assert api.run(run_id, ws)["status"] == "running"
    process.kill()  # SIGKILL: nothing in the process can react
    process.wait()
    failed = api.run(run_id, ws)
    assert failed["status"] == "failed" and "ended before it finished" in failed["error"]
    api.delete_run(run_id, ws)
    assert api.runs(ws) == []
    process, run_id = foreground_training(ws)
    process.terminate()  # SIGTERM
    assert process.wait(30) == 130 and "cancelled" in process.stderr.read()
    assert api.run(run_id, ws)["status"] == "cancelled"


def test_a_request_that_cannot_work_is_refused_before_any_job_exists(ws):
    with pytest.raises(CrossLensError, match="no dataset named 'books'"):
        api.start_training("books", "tgt", "bpr", workspace=ws)
    with pytest.raises(CrossLensError, match="has no setting"):
        api.start_training("src", "tgt", "bpr", settings={"colour": 1}, workspace=ws)
    assert api.jobs(ws) == [] and not any((Store(ws).root / "jobs").iterdir())


def test_cli_background_train_jobs_and_cancel(ws, capsys):
    from engine.__main__ import main
    assert main(["train", "--source", "src", "--target", "tgt", "--model", "pop", "--background",
                 "--workspace", str(ws)]) == 0
    job_id = capsys.readouterr().out.split()[1]
    wait(ws, job_id, lambda j: j["status"] == "done")
    assert main(["jobs", "--workspace", str(ws)]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["cancel", "nope", "--workspace", str(ws)]) == 2
    assert "no job 'nope'" in capsys.readouterr().err


def test_maps_of_a_finished_run_are_computed_by_a_job_and_refused_for_a_model_without_vectors(ws):
    pop = api.train("src", "tgt", "pop", workspace=ws)
    with pytest.raises(CrossLensError, match="maps are made of the item vectors"):
        api.start_maps(pop["id"], ws)
    bpr = api.train("src", "tgt", "bpr", epochs=1, maps=False, workspace=ws)
    job = api.start_maps(bpr["id"], ws)
    done = wait(ws, job["id"], lambda j: j["status"] not in ("starting", "running"))
    assert done["status"] == "done" and done["run_id"] == bpr["id"], api.job_log(job["id"], ws)
    assert api.runs_table(ws).set_index("run").loc[bpr["id"], "maps"]


def test_a_run_is_derived_by_a_job_and_a_derivation_that_cannot_work_is_refused_before_any_job(ws):
    parent = api.train("src", "tgt", "lmkg", epochs=1, settings={"dim": 16, "max_history": 20}, maps=False,
                       workspace=ws)
    job = api.start_derive(parent["id"], {"new_items": 2.0}, ws)
    assert job["spec"]["kind"] == "derive" and job["spec"]["settings"] == {"new_items": 2.0}
    done = wait(ws, job["id"], lambda j: j["status"] not in ("starting", "running"))
    assert done["status"] == "done", api.job_log(job["id"], ws)
    child = api.run(done["run_id"], ws)
    assert child["config"]["derived_from"] == parent["id"] and child["config"]["params"]["new_items"] == 2.0
    pop = api.train("src", "tgt", "pop", workspace=ws)
    before = len(api.jobs(ws))
    with pytest.raises(CrossLensError, match="only nothing can be changed on a trained run"):
        api.start_derive(pop["id"], {"new_items": 2.0}, ws)
    with pytest.raises(ValueError, match="new_items must be at least -10 and at most 10"):
        api.start_derive(parent["id"], {"new_items": 20.0}, ws)
    with pytest.raises(CrossLensError, match="dim change"):
        api.start_derive(parent["id"], {"dim": 8}, ws)
    assert len(api.jobs(ws)) == before


def test_jobs_beyond_the_limit_wait_in_order_and_a_waiting_one_can_be_cancelled(ws, monkeypatch):
    monkeypatch.setenv("CROSSLENS_MAX_JOBS", "1")
    first = api.start_training("src", "tgt", "lmkg", epochs=500, settings={"patience": 500}, maps=False,
                               workspace=ws)
    second = api.start_training("src", "tgt", "pop", maps=False, workspace=ws)
    third = api.start_training("src", "tgt", "pop", maps=False, workspace=ws)
    running = wait(ws, first["id"], lambda j: "left in this stage" in (j["message"] or ""))  # the first runs ...
    # times read m:ss, or h:mm:ss on a machine slow enough that 500 epochs would take an hour
    clock = r"(\d+:)?\d+:\d\d"
    assert re.fullmatch(rf"train · epoch \d+ of 500( done)? · {clock} elapsed · about {clock} left in this stage at "
                        r"most \(early stopping may end it sooner\)", running["message"]), running["message"]
    queued = wait(ws, third["id"], lambda j: "queued: 2 job(s) before it" in (j["message"] or ""))
    assert queued["status"] == "starting" and api.job(second["id"], ws)["status"] == "starting"  # ... the rest wait
    assert api.cancel_job(second["id"], ws)["status"] == "cancelled"  # cancelled while waiting: it never ran
    assert api.job(second["id"], ws)["run_id"] is None
    api.cancel_job(first["id"], ws)
    done = wait(ws, third["id"], lambda j: j["status"] not in ("starting", "running"))
    assert done["status"] == "done", api.job_log(third["id"], ws)
    assert [r["model"] for r in api.runs(ws)] == ["lmkg", "pop"]
