"""External peers: RecBole 1.2.1 models trained on exactly our scenario and stored as normal runs.

RecBole 1.2.1 only works with old numpy/scipy, so it lives in its own venv (.venv-recbole, `make peers-venv`) and
runs as a subprocess (peers/recbole_runner.py) on the scenario as engine/export.py writes it. Its top-20 lists come
back as exported item ids and are scored here by our own metric code. `sasrec` and `lightgcn` see the target domain
alone, so they cannot serve cold users and are scored on the warm test cases only; `sasrec-mixed` trains on every
domain's sequences and is scored on every test case, cold ones included. A run pairs with ours in `compare` on the
cases both have.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections import deque
from itertools import islice
from pathlib import Path

import numpy as np

from . import evaluate, export
from . import scenario as scenarios
from .errors import CrossLensError
from .request import scenario_spec
from .store import open_workspace, write_parquet

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-recbole" / "bin" / "python"
RUNNER = ROOT / "peers" / "recbole_runner.py"
PEERS = {"sasrec": "SASRec", "lightgcn": "LightGCN", "sasrec-mixed": "SASRec"}  # our name -> RecBole's
MIXED = {"sasrec-mixed"}  # trained on the mixed view (every domain), so they serve cold users too
# Defaults on top of the runner's, below the caller's settings. On the shipped data the mixed view holds ~3.2x the
# target view's SASRec training sequences (arts -> office: 155k vs 48k), so it gets 3x the runner's one-hour time
# budget for about as many epochs.
PEER_SETTINGS = {"sasrec-mixed": {"time_budget": 3 * 3600}}
LABEL = "RecBole 1.2.1"
SEGMENTS = tuple(evaluate.segments_without_cold_users())  # a peer cannot serve cold users


def peer_name(model: str) -> str:
    """Our name of a peer given as e.g. `sasrec` or `recbole-sasrec`, once it can run here."""
    name = model.lower().removeprefix("recbole-")
    if name not in PEERS:
        raise CrossLensError(f"unknown peer '{model}'; choose one of: {', '.join(PEERS)}.")
    if not PEER_PYTHON.exists():
        raise CrossLensError(f"the RecBole venv {PEER_PYTHON.parent.parent} is missing; peers run in their own venv "
                             f"because RecBole 1.2.1 needs old numpy and scipy. Create it with `make peers-venv`.")
    return name


def run_peer(source: str, target: str, model: str, seed: int = 0, workspace=None, settings: dict | None = None,
             progress=None, on_run=None) -> dict:
    """Train a RecBole peer on the scenario train() would build for (source, target, seed), score it on its test
    cases (export.case_rows) with our metrics and store it as run `recbole-<model>`; returns the run record.
    `on_run` is called with the run id once the run exists (after training)."""
    name = peer_name(model)
    mixed = name in MIXED
    store = open_workspace(workspace)
    sc = scenarios.build(store, scenario_spec(store, source, target, seed))
    with tempfile.TemporaryDirectory(prefix="crosslens-peer-") as tmp:
        folder = export.export_recbole(sc, tmp, mixed=mixed)
        result, log = _run_runner(folder, PEERS[name], seed, {**PEER_SETTINGS.get(name, {}), **(settings or {})},
                                  Path(tmp), progress)

    started = time.time()
    rows = export.case_rows(sc, mixed)
    if result["cases"] != rows.tolist():
        raise RuntimeError("the RecBole runner answered other cases than were exported")
    cases = sc.test.subset(rows)
    top = _target_indices(sc, cases, result["top"], mixed)
    ev = evaluate.evaluate_top(sc, cases, top)
    # a mixed-view peer is scored on cold cases too: it keeps every segment
    summary = dict(ev.summary) if mixed else {segment: ev.summary[segment] for segment in SEGMENTS}
    eval_seconds = result["rank_seconds"] + time.time() - started

    info = ("epochs_run", "best_epoch", "stop_reason", "valid_ndcg@10_per_epoch", "best_valid_ndcg@10",
            "rank_seconds", "train_interactions", "users", "items", "unknown_users", "empty_histories",
            "unknown_history_items", "unscored_target_items", "device", "torch")
    config = {"params": result["settings"], "peer": LABEL, "recbole_model": result["model"],
              "view": "mixed" if mixed else "target", **{k: result[k] for k in info}}
    run = store.new_run(sc.spec, f"recbole-{name}", config)
    if on_run:
        on_run(run["id"])
    run_dir = store.run_dir(run["id"])
    try:
        write_parquet(ev.per_case, run_dir / "per_user.parquet")
        (run_dir / "peer.log").write_text(log)
        return store.finish_run(run["id"], summary, result["train_seconds"], eval_seconds)
    except BaseException as err:
        store.fail_run(run["id"], "failed", f"{type(err).__name__}: {err}")
        raise


def _run_runner(folder: Path, model: str, seed: int, settings: dict, tmp: Path, progress) -> tuple[dict, str]:
    """Run the RecBole runner, passing its per-epoch lines to `progress`; returns its result and its log."""
    out, log_path = tmp / "result.json", tmp / "runner.log"
    command = [str(PEER_PYTHON), str(RUNNER), str(folder), "--model", model, "--seed", str(seed), "--out", str(out),
               "--settings", json.dumps(settings)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp)
        try:
            for line in proc.stdout:
                try:
                    epoch = json.loads(line)
                except ValueError:
                    continue  # not a progress line
                if progress:
                    progress({"stage": "recbole", **{k: epoch[k] for k in ("epoch", "loss", "valid_ndcg@10")}},
                             _fraction(epoch))
            proc.wait()
        except BaseException:  # cancelled: stop the runner too
            proc.kill()
            proc.wait()
            raise
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "".join(deque(text.splitlines(keepends=True), maxlen=15))
        raise CrossLensError(f"the RecBole runner ({model}) failed with exit code {proc.returncode}; "
                             f"the end of its log:\n{tail}")
    return json.loads(out.read_text()), text


def _fraction(epoch: dict) -> float:
    """How far training is, from a runner's epoch line: whichever of the epoch limit and the time budget is nearer."""
    budget = epoch.get("time_budget") or 0
    return min(max(epoch["epoch"] / epoch["epochs"], epoch["seconds"] / budget if budget else 0.0), 1.0)


def _target_indices(sc: scenarios.Scenario, cases: scenarios.Cases, top_ids: list[list[str]],
                    mixed: bool = False) -> np.ndarray:
    """Exported item ids -> target item indices, as a (cases, TOP) array. A list shorter than TOP (RecBole cannot
    score items it never saw in training) is filled with the remaining unmasked items in index order: ranked last."""
    index = {item: i for i, item in enumerate(export.item_tokens(sc, mixed)[: sc.n_target])}
    top = np.empty((len(cases), evaluate.TOP), dtype=np.int64)
    for row, ids in enumerate(top_ids):
        listed = [index[i] for i in ids[: evaluate.TOP]]
        if len(listed) < evaluate.TOP:
            taken = set(listed) | set(cases.exclude[row].tolist())
            listed += islice((i for i in range(sc.n_target) if i not in taken), evaluate.TOP - len(listed))
        top[row] = listed
    return top
