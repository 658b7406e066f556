"""The run lifecycle: a train request becomes a scenario, a fitted model, its evaluation and a stored run; stored
runs are read, loaded (weights, no retraining), derived (a post-training setting changed), compared and mapped.

Every function takes `workspace`: a Store (engine.store.open_workspace) or a folder. engine.api is the facade
over this module; nothing here imports it.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from . import deliver, evaluate, maps, metrics
from . import scenario as scenarios
from .errors import CrossLensError
from .models import MODELS
from .models.base import ItemSpace, explainable, learns_vectors
from .request import TrainRequest, make_model, scenario_spec as request_spec  # a checked spec on the current versions
from .store import Store, open_workspace, write_atomic, write_parquet
from .train import init_distributed


# ---- training and storing -----------------------------------------------------------------------------------------
def train(request: TrainRequest, workspace=None, progress=None, on_run=None) -> dict:
    """Build the request's scenario, fit, evaluate on the test cases and store the run; returns the run record.
    With request.maps, a model with an item space also gets its embedding maps (engine.maps) once the run is
    stored. `on_run(run_id)` is called as soon as the run is registered (a background job links itself to it)."""
    store = open_workspace(workspace)
    spec, recommender = request.check(store)
    sc = scenarios.build(store, spec)
    evaluate.check_scenario(sc)
    rank, _ = init_distributed()
    if rank != 0:  # under torchrun, the other ranks help fit and rank the test cases; rank 0 stores the run
        recommender.fit(sc)
        if not request.sampled:  # sampled ranking is not shared out (evaluate.rank_shared): rank 0 does it all
            evaluate.evaluate(recommender, sc, "test")
        return {}
    record = fit_and_store(store, spec, request, recommender, sc, progress, on_run)
    if request.maps and learns_vectors(type(recommender)):  # after the run is stored: `engine map` can redo them
        if progress:
            progress({"stage": "embedding maps"}, 1.0)
        maps.write_maps(store.run_dir(record["id"]), sc, recommender, seed=request.seed)
    return record


def fit_and_store(store: Store, spec: dict, request: TrainRequest, recommender, sc, progress=None, on_run=None,
                  split: str = "test", config: dict | None = None) -> dict:
    """Register a run, fit the recommender on `sc` and evaluate it on `split`; a run evaluated on the validation
    cases (a tuning trial, engine.tune) is stored as a "trial" with its metrics named "valid <segment>", so
    nothing that reads test figures can take it for a finished run."""
    _, world = init_distributed()
    config = {"params": recommender.params, "sampled": request.sampled, "device": str(recommender.device),
              "processes": world, "threads": torch.get_num_threads(),  # another count sums in another order
              **(config or {})}
    run_record = store.new_run(spec, request.model, config)
    if on_run:
        on_run(run_record["id"])
    try:
        started = time.time()
        recommender.fit(sc, progress=progress)
        return _evaluate_and_store(store, run_record["id"], recommender, sc, time.time() - started,
                                   request.sampled, split)
    except KeyboardInterrupt:
        store.fail_run(run_record["id"], "cancelled", "cancelled by the user")
        raise
    except BaseException as err:
        store.fail_run(run_record["id"], "failed", f"{type(err).__name__}: {err}")
        raise


def _evaluate_and_store(store: Store, run_id: str, recommender, sc, train_seconds: float, sampled=None,
                        split: str = "test") -> dict:
    folder = store.run_dir(run_id)
    _save_weights(recommender.state(), folder / "weights.safetensors")
    started = time.time()
    ev = evaluate.evaluate(recommender, sc, split, sampled=sampled)
    eval_seconds = time.time() - started
    if split != "test":
        summary = {f"{split} {segment}": values for segment, values in ev.summary.items()}
        return store.finish_run(run_id, summary, train_seconds, eval_seconds, status="trial")
    write_parquet(ev.per_case, folder / "per_user.parquet")
    if isinstance(recommender, ItemSpace):
        write_parquet(_item_vector_table(sc, recommender.item_vectors()), folder / "item_vectors.parquet")
    log = getattr(recommender, "log_", None)
    if log is not None:
        write_parquet(pd.DataFrame(_epochs(log)), folder / "curves.parquet")
    return store.finish_run(run_id, ev.summary, train_seconds, eval_seconds)


def derive(run_id: str, settings: dict, workspace=None, on_run=None) -> dict:
    """A new run from a finished run's weights with settings that act after training changed (lmkg's use_cf,
    new_items), evaluated on the same scenario: an ablation or a variant without retraining. Its train seconds are
    the parent's. `on_run` is called with the new run's id once it exists."""
    store = open_workspace(workspace)
    check_derive(store.require_run(run_id), settings)
    parent, sc, _ = load(run_id, store)
    return from_weights(store, parent, sc, settings, {"derived_from": run_id}, on_run)


def check_derive(parent: dict, settings: dict) -> None:
    """Refuse a derivation that cannot work before anything is loaded or made: a run that is not finished, a
    setting that changes how the model trains, a value outside its range."""
    if parent["status"] != "done":
        raise CrossLensError(f"run {parent['id']} is {parent['status']}; only a finished run can be derived from.")
    cls = MODELS[parent["model"]]
    wrong = set(settings) - set(cls.post_training)
    if wrong:
        raise CrossLensError(f"{', '.join(sorted(wrong))} change(s) how '{parent['model']}' trains; only "
                             f"{', '.join(sorted(cls.post_training)) or 'nothing'} can be changed on a trained run.")
    make_model(parent["model"], {**parent["config"]["params"], **settings})  # refuses a value out of its range


def from_weights(store: Store, parent: dict, sc, settings: dict | None = None, config: dict | None = None,
                 on_run=None) -> dict:
    """A new run of the parent's model rebuilt from its stored weights (with post-training `settings` changed),
    evaluated on the test cases of `sc`, the parent's scenario."""
    params = {**parent["config"]["params"], **(settings or {})}
    tensors = load_file(str(store.run_dir(parent["id"]) / "weights.safetensors"))
    recommender = MODELS[parent["model"]].from_state(params, sc, tensors)
    child = store.new_run(parent["scenario"], parent["model"],
                          {**parent["config"], "params": params, **(config or {})})
    if on_run:
        on_run(child["id"])
    try:
        return _evaluate_and_store(store, child["id"], recommender, sc, parent["train_seconds"],
                                   parent["config"]["sampled"])
    except BaseException as err:
        store.fail_run(child["id"], "failed", f"{type(err).__name__}: {err}")
        raise


def _item_vector_table(sc, vectors: torch.Tensor) -> pd.DataFrame:
    table = sc.items.iloc[: len(vectors)][["item_id", "domain"]].reset_index(drop=True)
    table["vector"] = list(vectors.float().cpu().numpy())
    return table


def _epochs(log: dict) -> list[dict]:
    """Flatten a model's training log (one stage or several) into rows of epochs."""
    if "epochs" in log:
        return log["epochs"]
    return [row for stage in log.values() for row in stage["epochs"]]


def _save_weights(tensors: dict, path: Path) -> None:
    write_atomic(path, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp)))


# ---- reading stored runs --------------------------------------------------------------------------------------------
def runs(workspace=None) -> list[dict]:
    return open_workspace(workspace).runs()


def run(run_id: str, workspace=None) -> dict:
    return open_workspace(workspace).require_run(run_id)


def runs_table(workspace=None) -> pd.DataFrame:
    """One row per run: its scenario, status, times and every metric as "<segment> <metric>" columns (a segment's
    name may hold spaces, e.g. "users 1-2"; a metric's never does)."""
    rows, store = [], open_workspace(workspace)
    for r in store.runs():
        sc = r["scenario"]
        row = {"run": r["id"], "name": r["name"], "tags": ", ".join(r["tags"]), "note": r["note"],
               "model": r["model"], "variant": variant(r), "source": ",".join(sc["source"]),
               "target": sc["target"],
               "seed": sc["seed"], "cold fraction": sc["cold_fraction"], "scenario": r["scenario_id"],
               "status": r["status"], "created": pd.to_datetime(r["created"], unit="s"),
               "train s": r["train_seconds"], "eval s": r["eval_seconds"], "error": r["error"],
               "maps": (store.run_dir(r["id"]) / "map_summary.json").exists()}
        for segment, values in (r["metrics"] or {}).items():
            row.update({f"{segment} {m}": v for m, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def variant(record: dict) -> str:
    """The model name plus the settings a run changed from the model's defaults (not its seed), e.g.
    "lmkg (use_source=False)": runs of one variant differ only by seed, so their spread is seed noise."""
    defaults = getattr(MODELS.get(record["model"]), "defaults", {})
    changed = [f"{k}={v}" for k, v in (record["config"].get("params") or {}).items()
               if k in defaults and k != "seed" and v != defaults[k]]
    return f"{record['model']} ({', '.join(changed)})" if changed else record["model"]


def test_users(run_id: str, segment: str | None = None, workspace=None) -> list[str]:
    """Ids of a finished run's test users (of one segment: warm or cold), from its stored per-user metrics: the
    users whose recommendations can be checked against a held-out item, without loading the model."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    path = store.run_dir(record["id"]) / "per_user.parquet"
    if not path.exists():
        raise CrossLensError(f"run {run_id} is {record['status']}; it has no test users on record.")
    cases = pd.read_parquet(path, columns=["user_id", "segment"])
    if segment:
        cases = cases[cases["segment"] == segment]
    return cases["user_id"].astype(str).tolist()


def run_curves(run_id: str, workspace=None) -> pd.DataFrame:
    """A finished run's training curves (epoch, loss, valid ndcg@10 per stage); empty for closed-form models."""
    store = open_workspace(workspace)
    path = store.run_dir(store.require_run(run_id)["id"]) / "curves.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def compare(run_a: str, run_b: str, metric: str = "ndcg@10", workspace=None) -> dict:
    """Paired Wilcoxon signed-rank test of two runs on the same scenario, per segment (evaluate.segment_masks) with
    cases in both runs; the item and user-activity buckets only where both runs stored their columns."""
    store = open_workspace(workspace)
    a, b = store.require_run(run_a), store.require_run(run_b)
    if a["scenario_id"] != b["scenario_id"]:
        raise CrossLensError(f"runs {run_a} and {run_b} are on different scenarios; a paired test needs the same "
                             f"scenario (source, target, seed, cold fraction and data).")
    frames = []
    for r in (a, b):
        if r["status"] != "done":
            raise CrossLensError(f"run {r['id']} is {r['status']}; compare finished runs.")
        frames.append(pd.read_parquet(store.run_dir(r["id"]) / "per_user.parquet"))
    if metric not in frames[0].columns or metric in evaluate.CASE_COLUMNS:
        options = ", ".join(c for c in frames[0].columns if c not in evaluate.CASE_COLUMNS)
        raise CrossLensError(f"unknown metric '{metric}'; choose one of: {options}.")
    # The columns that describe a case, where both runs have them, pair the cases (they agree on one scenario).
    keys = [c for c in evaluate.CASE_COLUMNS if c in frames[0] and c in frames[1]]
    both = frames[0][[*keys, metric]].merge(frames[1][[*keys, metric]], on=keys, suffixes=("_a", "_b"))
    result = {"run_a": run_a, "run_b": run_b, "model_a": a["model"], "model_b": b["model"], "metric": metric,
              "segments": {}}
    for segment, mask in evaluate.segment_masks(both).items():
        if mask.any():
            part = both[mask]
            result["segments"][segment] = metrics.paired_test(part[f"{metric}_a"], part[f"{metric}_b"])
    return result


# ---- loading a finished run -----------------------------------------------------------------------------------------
def load(run_id: str, workspace=None):
    """(run record, scenario, fitted model) of a finished run, from its stored weights; no retraining."""
    store = open_workspace(workspace)
    record = store.require_run(run_id)
    if record["status"] != "done":
        raise CrossLensError(f"run {run_id} is {record['status']}, not done; only finished runs can be used.")
    if record["config"].get("peer"):
        raise CrossLensError(f"run {run_id} is an external peer ({record['config']['peer']}); its model is not kept, "
                             f"only its metrics, so it cannot recommend.")
    sc = scenario_of(store, record)
    tensors = load_file(str(store.run_dir(run_id) / "weights.safetensors"))
    model = MODELS[record["model"]].from_state(record["config"]["params"], sc, tensors)
    return record, sc, model


def scenario_preview(source, target: str, seed: int = 0, cold_fraction: float = 0.2, workspace=None) -> dict:
    """What a scenario offers before a launch (evaluate.scenario_counts), and `problem`: why it would be refused
    (None if it would not)."""
    store = open_workspace(workspace)
    sc = scenarios.build(store, request_spec(store, source, target, seed, cold_fraction))
    try:
        evaluate.check_scenario(sc)
        problem = None
    except CrossLensError as err:
        problem = str(err)
    return {**evaluate.scenario_counts(sc), "problem": problem}


def scenario_of(store: Store, record: dict) -> scenarios.Scenario:
    """A run's scenario, rebuilt from the dataset versions it was trained on (kept when a dataset is replaced)."""
    spec = record["scenario"]
    for name, version in spec["versions"].items():
        if not store.has_version(name, version):
            raise CrossLensError(f"dataset '{name}' was deleted after run {record['id']}, with the version the run "
                                 f"was trained on; train a new run on the current data.")
    return scenarios.build(store, spec)


def compute_maps(run_id: str, workspace=None, max_points: int = maps.MAX_POINTS, seed: int = 0) -> dict:
    """(Re)compute the maps of a finished run from its stored weights; returns the summary."""
    if max_points < 2:
        raise CrossLensError(f"max points must be at least 2, got {max_points}.")
    store = open_workspace(workspace)
    maps.require_vectors(store.require_run(run_id))
    _, sc, model = load(run_id, store)
    return maps.write_maps(store.run_dir(run_id), sc, model, max_points, seed)


def explainer(run_id: str, workspace=None):
    """The explainer (engine.explain.Explainer) of a finished run, its model rebuilt from the stored weights."""
    from . import explain  # shap takes seconds to import: only where explanations are asked for
    store = open_workspace(workspace)
    model_class = MODELS.get(store.require_run(run_id)["model"])  # not one for a peer: load() says why
    if model_class is not None and not explainable(model_class):
        raise CrossLensError(explain.cannot_explain(model_class.name, run_id))  # before the (slow) load
    _, sc, model = load(run_id, store)
    return explain.Explainer(sc, model, run_id)


class LoadedRun:
    """A finished run's model on its scenario, loaded once, for any number of recommendations and explanations.

    A user with a test case is scored from that case's history (so held-out hits can be shown); any other user
    from their whole training history. Their known target items are never recommended. The model's scoring state
    is prepared here, once: from then on scoring only reads it, so one LoadedRun serves many threads (the
    dashboard's sessions).
    """

    def __init__(self, run_id: str, workspace=None):
        self.record, self.sc, self.model = load(run_id, workspace)
        with torch.no_grad():
            self.model.prepare()
        self.id, self._explainer, self._lock = run_id, None, threading.Lock()

    def recommend(self, user: str, k: int = 10) -> dict:
        sc = self.sc
        case = sc.user_case(sc.user(user))
        deliver.check_k(k, sc.n_target)
        history = case.history if len(case.history) else np.array([-1])
        batch = scenarios.Batch(torch.tensor([case.user]), torch.as_tensor(history)[None])
        with torch.no_grad():
            scores = self.model.score(batch.to(self.model.device)).float().cpu()[0].clone()
        scores[torch.as_tensor(case.exclude, dtype=torch.long)] = -torch.inf
        values, indices = scores.topk(k)
        shown = values > -torch.inf  # a user who knows nearly every item gets fewer than k, never a known one
        values, indices = values[shown], indices[shown]
        items = sc.items.iloc[indices.numpy()]
        relevant = set(case.relevant.tolist())
        recs = [{"item_id": i, "title": t, "domain": sc.target, "score": float(s), "held_out": j in relevant}
                for i, t, s, j in zip(items["item_id"], items["title"], values.tolist(), indices.tolist())]
        return {"run_id": self.id, "user": str(user), "basis": case.basis, "recommendations": recs}

    def recommend_to_file(self, out, k: int = 10, reasons: bool = False, histories=None, progress=None) -> dict:
        """Top-k recommendations of every user of the scenario, or of the users in a `histories` file, streamed
        into `out` (.csv or .parquet); see engine.deliver for who is scored from what."""
        out = deliver.check_output(out)
        deliver.check_k(k, self.sc.n_target)
        if (reasons or histories) and not self.model.uses_history:
            raise CrossLensError(f"run {self.id}'s model ({self.record['model']}) scores users by their trained "
                                 f"vectors, not from a history, so it can neither name a history item as a reason "
                                 f"nor score users it never saw; use a run of a model that reads the history.")
        warnings = []
        if histories is None:
            users, user_ids, rows = deliver.scenario_histories(self.sc)
        else:
            users, user_ids, rows, warnings = deliver.file_histories(self.sc, histories)
        written = deliver.write(deliver.recommendations(self.sc, self.model, users, user_ids, rows, k, reasons,
                                                        progress), out)
        return {"run_id": self.id, "out": str(out), "users": len(user_ids), "rows": written, "warnings": warnings}

    def history(self, user: str) -> pd.DataFrame:
        """The items the user's recommendations are scored from, oldest first: position, item_id, title, domain."""
        case = self.sc.user_case(self.sc.user(user))
        items = self.sc.items.iloc[case.history]
        return pd.DataFrame({"position": np.arange(1, len(items) + 1), "item_id": items["item_id"].to_numpy(),
                             "title": items["title"].to_numpy(), "domain": items["domain"].to_numpy()})

    def explain(self, user: str, item: str, method: str = "both", **options) -> dict:
        with self._lock:  # one explainer, made on first use
            if self._explainer is None:
                from . import explain  # see explainer()
                self._explainer = explain.Explainer(self.sc, self.model, self.id)
        return self._explainer.explain(user, item, method, **options)
