"""Background jobs: a training run (or a tuning study, a peer run, a run's maps) in its own OS process, tracked in
the registry.

`start_training` checks the request, writes a job row holding it and launches `python -m engine train --job ID`
in a new session (process group), its output going to the job's log; that process reads the request back from
the row, and waits (status `starting`, message `queued: ...`) until fewer than `max_jobs()` jobs run and every
job started before it has begun. It reports through `Reporter`: the job row (stage, progress) at most once a
second and every epoch's loss and validation figure as a line of `curves.jsonl`; it marks the job done, failed or
cancelled itself.
Readers (the dashboard, `python -m engine jobs`) only read, so a browser reload or a server restart loses
nothing. A job whose process is gone while its row still says it is running (killed, machine rebooted) is marked
failed on the next look, and so is its run. `cancel_job` terminates the process group; SIGTERM becomes
KeyboardInterrupt inside, so the run is marked cancelled by the code that started it.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from . import maps, peers, runs
from .device import cpu_cores
from .errors import CrossLensError
from .request import TrainRequest, scenario_spec
from .store import JOB_ACTIVE, Store, open_workspace, pid_alive

REPO = Path(__file__).resolve().parent.parent
REPORT_EVERY = 1.0  # seconds between progress writes (epoch ends are always written)
QUEUE_POLL = 1.0    # seconds between a waiting job's looks for a free slot
POSITION_KEYS = ("texts", "users", "cases", "trial")  # progress keys that say how far into a stage, not a result
BASELINES = ("pop", "itemknn", "userknn")  # the runs every scenario is compared against


def max_jobs() -> int:
    """How many jobs run at once (the others wait, in order): $CROSSLENS_MAX_JOBS, default one per two cores. Each
    job's torch and BLAS threads are its share of the cores (job_threads): two trainings spinning threads on the
    same cores run many times slower than one after the other."""
    value = os.environ.get("CROSSLENS_MAX_JOBS", str(max(1, cpu_cores() // 2)))
    if not value.isdigit() or int(value) < 1:
        raise CrossLensError(f"CROSSLENS_MAX_JOBS must be a whole number of at least 1, got '{value}'.")
    return int(value)


def job_threads() -> int:
    """Threads of one job: the cores shared among the jobs that may run at once, at least one."""
    return max(1, cpu_cores() // max_jobs())


def start_training(request: TrainRequest, workspace=None) -> dict:
    """Launch a training run as a background process; returns the job record. A request that cannot work
    (unknown domain or model, bad setting) raises here, before any process or job exists. The process reads the
    request back from the job's row."""
    store = open_workspace(workspace)
    request.check(store)
    return _launch(store, {"kind": "train", **request.to_dict()}, ["train"])  # the spec is the request


def missing_baselines(request: TrainRequest, workspace=None) -> list[str]:
    """The BASELINES with no run on the request's scenario (finished or training) and no job waiting for one: what
    a comparison on a new pair of domains lacks."""
    store = open_workspace(workspace)
    spec, _ = request.check(store)
    have = {r["model"] for r in store.runs() if r["scenario"] == spec and r["status"] in ("done", "running")}
    same = (sorted(request.source), request.target, request.seed, request.cold_fraction)
    waiting = [TrainRequest.from_dict(j["spec"]) for j in jobs(store)
               if j["status"] in JOB_ACTIVE and j["spec"].get("kind") == "train"]
    have |= {r.model for r in waiting if (sorted(r.source), r.target, r.seed, r.cold_fraction) == same}
    return [m for m in BASELINES if m not in have and m != request.model]


def start_tuning(request, workspace=None) -> dict:
    """Launch a tuning study (engine.tune.TuneRequest) as a background process; returns the job record. A request
    that cannot work raises here, before any process or job exists."""
    store = open_workspace(workspace)
    request.check(store)
    return _launch(store, {"kind": "tune", **request.to_dict()}, ["tune"])


def spec_of(job_id: str, kind: str, workspace=None) -> dict:
    """The spec a job of this kind was started with (read inside the job's process)."""
    record = open_workspace(workspace).job(job_id)
    if record is None or record["spec"].get("kind") != kind:
        raise CrossLensError(f"job '{job_id}' is not a {kind} job of this workspace.")
    return record["spec"]


def request_of(job_id: str, workspace=None) -> TrainRequest:
    """The train request a training job was started with (read inside the job's process)."""
    return TrainRequest.from_dict(spec_of(job_id, "train", workspace))


def start_peer(source: str, target: str, model: str, seed: int = 0, settings: dict | None = None,
               workspace=None) -> dict:
    """Launch a RecBole peer run (`python -m engine peer`) as a background process; returns the job record. An
    unknown peer or domain, or a missing RecBole venv, raises here."""
    store = open_workspace(workspace)
    settings = dict(settings or {})
    name = peers.peer_name(model)
    scenario_spec(store, source, target, seed)
    spec = {"kind": "peer", "source": [source], "target": target, "model": f"recbole-{name}", "seed": seed,
            "settings": settings}
    args = ["peer", "--source", source, "--target", target, "--model", name, "--seed", str(seed), *_set_args(settings)]
    return _launch(store, spec, args)


def start_maps(run_id: str, workspace=None) -> dict:
    """Compute a finished run's embedding maps in a background process; returns the job record."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    maps.require_vectors(record)
    return _launch(store, _run_spec("map", record), ["map", run_id])


def start_derive(run_id: str, settings: dict, workspace=None) -> dict:
    """Derive a new run from a finished run's weights with post-training settings changed (runs.derive) in a
    background process; returns the job record. A derivation that cannot work raises here, before any job exists."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    runs.check_derive(record, settings)
    spec = {**_run_spec("derive", record), "settings": settings}
    return _launch(store, spec, ["derive", run_id, *_set_args(settings)])


def _run_spec(kind: str, record: dict) -> dict:
    """The spec of a job that works on a finished run: the run and what it was trained on (the job lists show it)."""
    return {"kind": kind, "run": record["id"], "model": record["model"], "source": record["scenario"]["source"],
            "target": record["scenario"]["target"], "seed": record["scenario"]["seed"]}


def _set_args(settings: dict) -> list[str]:
    """--set KEY=VALUE for each setting, as the job's command reads them back (request.parse_settings)."""
    return [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]


def _launch(store: Store, spec: dict, args: list[str]) -> dict:
    """Register the job and start `python -m engine ARGS --job ID` in its own session, output to its log."""
    job = store.new_job(spec)
    argv = [sys.executable, "-m", "engine", *args, "--workspace", str(store.root.resolve()), "--job", job["id"]]
    threads = str(job_threads())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with open(store.root / job["log_path"], "ab") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    store.update_job(job["id"], pid=process.pid)
    # Reap the child when it ends, so it does not linger as a zombie that still looks alive.
    threading.Thread(target=process.wait, daemon=True).start()
    return store.job(job["id"])


def jobs(workspace=None) -> list[dict]:
    """Every job, newest last; a job whose process has died without reporting is marked failed first."""
    store = open_workspace(workspace)
    for job in store.jobs():
        if job["status"] in JOB_ACTIVE and not _alive(job):
            _mark_dead(store, job)
    return store.jobs()


def job(job_id: str, workspace=None) -> dict:
    record = next((j for j in jobs(workspace) if j["id"] == job_id), None)
    if record is None:
        raise CrossLensError(f"no job '{job_id}' in this workspace; `python -m engine jobs` lists them.")
    return record


def cancel_job(job_id: str, workspace=None, wait: float = 10.0) -> dict:
    """Stop a running job: SIGTERM to its process group, SIGKILL if it has not ended after `wait` seconds."""
    store = open_workspace(workspace)
    record = job(job_id, workspace)
    if record["status"] not in JOB_ACTIVE:
        return record
    if record["pid"]:
        _signal(record["pid"], signal.SIGTERM)
        deadline = time.time() + wait
        while _alive(record) and time.time() < deadline:
            time.sleep(0.1)
        if _alive(record):
            _signal(record["pid"], signal.SIGKILL)
    store.update_job(job_id, only_if_active=True, status="cancelled", message="cancelled by the user",
                     finished=time.time())
    _settle_run(store, store.job(job_id), "cancelled", "cancelled by the user")
    return store.job(job_id)


def curves(job_id: str, workspace=None) -> pd.DataFrame:
    """The job's epochs so far: stage, epoch, loss, valid_ndcg@10, seconds (a line still being written is skipped)."""
    path = open_workspace(workspace).job_dir(job_id) / "curves.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["stage", "epoch", "loss", "valid_ndcg@10", "seconds"])


def log_tail(job_id: str, workspace=None, lines: int = 30) -> str:
    store = open_workspace(workspace)
    path = store.job_dir(job_id) / "log.txt"
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 64_000))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


@contextlib.contextmanager
def reporting(job_id: str | None, workspace=None):
    """Inside a job's process (a CLI command given --job): yields its Reporter (None without a job) and records
    how the block ended: done, cancelled (KeyboardInterrupt, which SIGTERM becomes) or failed."""
    if not job_id:
        yield None
        return
    reporter = Reporter(job_id, workspace)
    try:
        yield reporter
    except KeyboardInterrupt:
        reporter.end("cancelled", "cancelled by the user")
        raise
    except BaseException as err:
        reporter.end("failed", str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}")
        raise
    reporter.end("done", "done")


class Reporter:
    """Inside the job's process: the `progress` callback of api.train, writing to the registry and curves."""

    def __init__(self, job_id: str, workspace=None):
        self.store, self.id = open_workspace(workspace), job_id
        if self.store.job(job_id) is None:
            raise CrossLensError(f"no job '{job_id}' in workspace {self.store.root}.")
        self.curves = self.store.job_dir(job_id) / "curves.jsonl"
        self.last = 0.0
        interrupt_on_sigterm()  # a cancel arrives as SIGTERM, also while the job waits
        limit = max_jobs()
        try:
            while ahead := self.store.claim_job_slot(job_id, limit, os.getpid()):
                self.store.update_job(job_id, only_if_active=True, pid=os.getpid(),
                                      message=f"queued: {ahead} job(s) before it; {limit} run(s) at once "
                                              f"(CROSSLENS_MAX_JOBS)")
                time.sleep(QUEUE_POLL)
                jobs(self.store)  # a job whose process died frees its slot
        except KeyboardInterrupt:  # cancelled while waiting: say so before the process ends, or the next look by
            self.end("cancelled", "cancelled by the user")  # another waiting job would take it for a crash
            raise
        self.started, self.stage, self.stage_started = time.time(), None, time.time()  # the queue's wait not counted

    def attach(self, run_id: str) -> None:
        self.store.update_job(self.id, run_id=run_id)

    def __call__(self, info: dict, fraction: float) -> None:
        now, epoch = time.time(), "epoch" in info
        if info.get("stage") != self.stage:
            self.stage, self.stage_started = info.get("stage"), now
        if epoch:
            with open(self.curves, "a") as f:
                f.write(json.dumps(info) + "\n")
            print(describe(info), flush=True)
        if epoch or now - self.last >= REPORT_EVERY:
            self.last = now
            fraction = min(max(fraction, 0.0), 1.0)
            timing = eta(now - self.started, now - self.stage_started, fraction, "epochs" in info or "epoch_of" in info)
            self.store.update_job(self.id, only_if_active=True, progress=fraction,
                                  message=f"{describe(info, figures=False)} · {timing}")

    def end(self, status: str, message: str) -> None:
        self.store.update_job(self.id, only_if_active=True, status=status, message=message, finished=time.time(),
                              **({"progress": 1.0} if status == "done" else {}))


def describe(info: dict, figures: bool = True) -> str:
    """A progress report in words: the stage, how far into it (epoch k of N, texts, users), then (with `figures`)
    the other figures, such as the last epoch's loss and validation NDCG@10."""
    parts = [info.get("stage", "")]
    if "epoch_of" in info:
        parts.append(f"epoch {info['epoch_of']}")
    elif "epoch" in info:
        total = f" of {info['epochs']}" if "epochs" in info else ""
        parts.append(f"epoch {info['epoch']}{total} done")
    shown = {k: v for k, v in info.items() if k not in ("stage", "epoch", "epochs", "epoch_of", "seconds")}
    parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()
              if figures or k in POSITION_KEYS]
    return " · ".join(p for p in parts if p)


def eta(elapsed: float, stage_elapsed: float, fraction: float, early_stopping: bool) -> str:
    """Elapsed time, and the time left in the stage from how fast it went so far (epochs: measured epoch times)."""
    text = f"{clock(elapsed)} elapsed"
    if 0 < fraction < 1 and stage_elapsed >= 1:
        text += f" · about {clock(stage_elapsed * (1 - fraction) / fraction)} left in this stage"
        if early_stopping:
            text += " at most (early stopping may end it sooner)"
    return text


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt where the work is, so the code that started a run marks it cancelled (a
    job's process, and any CLI command: `kill` of a foreground training cancels its run too)."""
    if threading.current_thread() is threading.main_thread():  # only the main thread may set a handler
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _alive(job: dict) -> bool:
    """Whether the job's process still runs (and is that job's, not a recycled pid)."""
    pid = job["pid"]
    if not pid:  # between the row and the launch: young jobs are given a moment
        return time.time() - (job["created"] or 0) < 30
    proc = Path(f"/proc/{pid}")
    if proc.parent.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X") and job["id"] in (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
    return pid_alive(pid)


def _mark_dead(store: Store, job: dict) -> None:
    tail = log_tail(job["id"], store.root, lines=1)
    message = "the training process ended without reporting" + (f": {tail}" if tail else "")
    if store.update_job(job["id"], only_if_active=True, status="failed", message=message, finished=time.time()):
        _settle_run(store, store.job(job["id"]), "failed", message)


def _settle_run(store: Store, job: dict, status: str, message: str) -> None:
    """A run left 'running' by a job that ended is marked like the job."""
    run = store.run(job["run_id"]) if job["run_id"] else None
    if run and run["status"] == "running":
        store.fail_run(run["id"], status, message)


def _signal(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)  # the job leads its own session, so its group id is its pid
    except ProcessLookupError:
        pass
