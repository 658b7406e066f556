"""The job queue measured: n training jobs one after the other, then the same n submitted at once.

Together they must not cost more than alone: at most max_jobs() run at a time, each on its share of the cores, and
the rest wait. Reports each way's wall time, the most jobs seen running at once, and the ratio. The runs it makes are
deleted afterwards.
"""
from __future__ import annotations

import time

from . import jobs
from .request import TrainRequest
from .store import JOB_ACTIVE, open_workspace

POLL = 0.25  # seconds between looks at the jobs' states


def run(source: str, target: str, model: str = "bpr", n: int = 5, epochs: int = 3, workspace=None,
        progress=None) -> dict:
    store = open_workspace(workspace)
    requests = [TrainRequest([source], target, model, seed=seed, epochs=epochs, maps=False) for seed in range(n)]
    for request in requests:
        request.check(store)  # before any job exists
    made: list[str] = []
    try:
        alone = []
        for k, request in enumerate(requests):
            seconds, _, ids = _run_together([request], store)
            alone.append(seconds)
            made += ids
            if progress:
                progress({"stage": "one after the other", "jobs": f"{k + 1} of {n}"}, (k + 1) / (2 * n))
        together, most_running, ids = _run_together(requests, store)
        made += ids
    finally:
        for run_id in made:
            store.delete_run(run_id)
    return {"model": model, "epochs": epochs, "jobs": n, "limit": jobs.max_jobs(), "threads_per_job": jobs.job_threads(),
            "alone_seconds": alone, "alone_total": sum(alone), "together_seconds": together,
            "ratio": together / sum(alone), "most_running_at_once": most_running}


def _run_together(requests: list[TrainRequest], store) -> tuple[float, int, list[str]]:
    """(wall seconds from the first submission to the last end, most jobs running at once, their run ids)."""
    started = time.time()
    ids = [jobs.start_training(request, store)["id"] for request in requests]
    most = 0
    while True:
        states = [jobs.job(i, store) for i in ids]
        most = max(most, sum(s["status"] == "running" and s["run_id"] is not None for s in states))
        if not any(s["status"] in JOB_ACTIVE for s in states):
            break
        time.sleep(POLL)
    failed = [s for s in states if s["status"] != "done"]
    if failed:
        raise RuntimeError(f"job {failed[0]['id']} ended {failed[0]['status']}: {failed[0]['message']}")
    return time.time() - started, most, [s["run_id"] for s in states]
