"""The functions the CLI and the dashboard both call. Each takes `workspace` (a folder; default ./workspace or
$CROSSLENS_WORKSPACE) and raises CrossLensError / DatasetError with a readable message on bad input."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from . import data, evaluate, metrics
from . import scenario as scenarios
from .errors import CrossLensError
from .models import MODELS
from .models.base import learns_vectors
from .jobs import (cancel_job, curves as job_curves, job, jobs, log_tail as job_log,  # noqa: F401
                   start_maps, start_training)
from .profile import dataset_profile, runs_using, shared_users  # noqa: F401  (read-only views for analysts)
from .store import JOB_ACTIVE, Store, write_parquet
from .train import init_distributed

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_DATASET = ASSETS / "data" / "amazon-arts-office"
DEFAULT_RUNS = [("arts", "office", "pop"), ("arts", "office", "itemknn"), ("arts", "office", "lmkg")]


# ---- datasets ---------------------------------------------------------------------------------------------------
def ingest(domain: str, interactions, items=None, kg=None, workspace=None) -> dict:
    """Validate and store one domain dataset (replacing an earlier one of that name). Nothing is written on error."""
    data.validate_name(domain)
    dd = data.read_domain(domain, interactions, items, kg)
    inter = dd.interactions
    stats = {"n_users": int(inter["user_id"].nunique()),
             "n_items": int(len(dd.items) if dd.items is not None else inter["item_id"].nunique()),
             "n_interactions": int(len(inter)), "n_triples": int(len(dd.kg) if dd.kg is not None else 0)}
    info = {"sources": {k: str(v) for k, v in (("interactions", interactions), ("items", items), ("kg", kg)) if v},
            "warnings": dd.warnings}
    record = Store(workspace).put_dataset(domain, {"interactions": inter, "items": dd.items, "kg": dd.kg}, stats, info)
    return {**record, "warnings": dd.warnings}


def datasets(workspace=None) -> list[dict]:
    return Store(workspace).datasets()


def delete_dataset(name: str, workspace=None) -> None:
    """Remove a dataset. Its runs stay (their metrics remain comparable) but can no longer be loaded."""
    store = Store(workspace)
    store.delete_dataset(_dataset(store, name)["name"])


def _dataset(store: Store, name: str) -> dict:
    record = store.dataset(name)
    if record is None:
        known = ", ".join(d["name"] for d in store.datasets()) or "none yet"
        raise CrossLensError(f"no dataset named '{name}' in workspace {store.root} (datasets: {known}); "
                             f"add it with `python -m engine ingest --domain {name} --interactions FILE`.")
    return record


# ---- training ---------------------------------------------------------------------------------------------------
def parse_settings(pairs: list[str] | None) -> dict:
    """['dim=32', 'lr=0.01'] -> {'dim': 32, 'lr': 0.01}"""
    settings = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CrossLensError(f"setting '{pair}' is not KEY=VALUE; write it like --set dim=32.")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        settings[key.strip()] = value
    return settings


def make_model(name: str, settings: dict | None = None, seed: int = 0):
    """A model from its name and settings; its own seed follows the scenario's unless set."""
    if name not in MODELS:
        raise CrossLensError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}.")
    settings = dict(settings or {})
    if "seed" in MODELS[name].defaults:
        settings.setdefault("seed", seed)
    if "epochs" not in MODELS[name].defaults:
        settings.pop("epochs", None)  # pop and itemknn are fitted in closed form
    try:
        return MODELS[name](**settings)
    except ValueError as err:
        raise CrossLensError(str(err)) from None


def scenario_spec(store: Store, source: list[str] | str, target: str, seed: int = 0,
                  cold_fraction: float = 0.2) -> dict:
    """The spec of a scenario on the workspace's current dataset versions, after checking the request."""
    source = [source] if isinstance(source, str) else list(source)
    if not source:
        raise CrossLensError("name at least one source domain, like --source arts.")
    if target in source:
        raise CrossLensError(f"'{target}' is both source and target; the target must be a different domain.")
    if not 0 <= cold_fraction < 1:
        raise CrossLensError(f"cold fraction must be in [0, 1), got {cold_fraction}.")
    versions = {d: _dataset(store, d)["version"] for d in [target, *source]}
    return scenarios.scenario_spec(source, target, seed, cold_fraction, versions)


def train(source: list[str] | str, target: str, model: str, seed: int = 0, cold_fraction: float = 0.2,
          epochs: int | None = None, settings: dict | None = None, sampled: int | None = None,
          workspace=None, progress=None, maps: bool = True, on_run=None) -> dict:
    """Build the scenario, fit, evaluate on the test cases and store the run; returns the run record. With maps,
    a model that learns item vectors also gets its embedding maps (engine.maps) once the run is stored.
    `on_run(run_id)` is called as soon as the run is registered (a background job links itself to it)."""
    store = Store(workspace)
    spec = scenario_spec(store, source, target, seed, cold_fraction)
    settings = dict(settings or {})
    if epochs is not None:
        settings["epochs"] = epochs
    recommender = make_model(model, settings, seed)
    sc = scenarios.build(store, spec)
    rank, world = init_distributed()
    if rank != 0:  # under torchrun, the other ranks help fit; rank 0 evaluates and stores the run
        recommender.fit(sc)
        return {}
    config = {"params": recommender.params, "sampled": sampled, "device": str(recommender.device), "processes": world}
    run = store.new_run(spec, model, config)
    if on_run:
        on_run(run["id"])
    try:
        started = time.time()
        recommender.fit(sc, progress=progress)
        record = _evaluate_and_store(store, run["id"], recommender, sc, time.time() - started, sampled)
    except KeyboardInterrupt:
        store.fail_run(run["id"], "cancelled", "cancelled by the user")
        raise
    except BaseException as err:
        store.fail_run(run["id"], "failed", f"{type(err).__name__}: {err}")
        raise
    if maps:  # after the run is stored: a run is not lost to its maps, which `python -m engine map` can redo
        from . import maps as embedding_maps
        if learns_vectors(type(recommender)):
            if progress:
                progress({"stage": "embedding maps"}, 1.0)
            embedding_maps.write_maps(store.run_dir(run["id"]), sc, recommender, seed=seed)
    return record


def _evaluate_and_store(store: Store, run_id: str, recommender, sc, train_seconds: float, sampled=None) -> dict:
    folder = store.run_dir(run_id)
    _save_weights(recommender.state(), folder / "weights.safetensors")
    started = time.time()
    ev = evaluate.evaluate(recommender, sc, "test", sampled=sampled)
    eval_seconds = time.time() - started
    write_parquet(ev.per_case, folder / "per_user.parquet")
    vectors = recommender.item_vectors()
    if vectors is not None:
        write_parquet(_item_vector_table(sc, vectors), folder / "item_vectors.parquet")
    log = getattr(recommender, "log_", None)
    if log is not None:
        write_parquet(pd.DataFrame(_epochs(log)), folder / "curves.parquet")
    return store.finish_run(run_id, ev.summary, train_seconds, eval_seconds)


def derive(run_id: str, settings: dict, workspace=None) -> dict:
    """A new run from a finished run's weights with settings that act after training changed (lmkg's use_cf),
    evaluated on the same scenario: an ablation without retraining. Its train seconds are the parent's."""
    store = Store(workspace)
    parent, sc, _ = load(run_id, workspace)
    cls = MODELS[parent["model"]]
    wrong = set(settings) - set(cls.post_training)
    if wrong:
        raise CrossLensError(f"{', '.join(sorted(wrong))} change(s) how '{parent['model']}' trains; only "
                             f"{', '.join(sorted(cls.post_training)) or 'nothing'} can be changed on a trained run.")
    params = {**parent["config"]["params"], **settings}
    tensors = load_file(str(store.run_dir(run_id) / "weights.safetensors"))
    recommender = cls.from_state(params, sc, tensors)
    run = store.new_run(parent["scenario"], parent["model"],
                        {**parent["config"], "params": params, "derived_from": run_id})
    try:
        return _evaluate_and_store(store, run["id"], recommender, sc, parent["train_seconds"], parent["config"]["sampled"])
    except BaseException as err:
        store.fail_run(run["id"], "failed", f"{type(err).__name__}: {err}")
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


# ---- runs ---------------------------------------------------------------------------------------------------------
def runs(workspace=None) -> list[dict]:
    return Store(workspace).runs()


def runs_table(workspace=None) -> pd.DataFrame:
    """One row per run: its scenario, status, times and every metric as "<segment> <metric>" columns (a segment's
    name may hold spaces, e.g. "users 1-2"; a metric's never does)."""
    rows, store = [], Store(workspace)
    for r in runs(workspace):
        sc = r["scenario"]
        row = {"run": r["id"], "model": r["model"], "variant": variant(r), "source": ",".join(sc["source"]),
               "target": sc["target"],
               "seed": sc["seed"], "cold fraction": sc["cold_fraction"], "scenario": r["scenario_id"],
               "status": r["status"], "created": pd.to_datetime(r["created"], unit="s"),
               "train s": r["train_seconds"], "eval s": r["eval_seconds"], "error": r["error"],
               "maps": (store.run_dir(r["id"]) / "map_summary.json").exists()}
        for segment, values in (r["metrics"] or {}).items():
            row.update({f"{segment} {m}": v for m, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def test_users(run_id: str, segment: str | None = None, workspace=None) -> list[str]:
    """Ids of a finished run's test users (of one segment: warm or cold), from its stored per-user metrics: the
    users whose recommendations can be checked against a held-out item, without loading the model."""
    record = run(run_id, workspace)
    path = Store(workspace).run_dir(record["id"]) / "per_user.parquet"
    if not path.exists():
        raise CrossLensError(f"run {run_id} is {record['status']}; it has no test users on record.")
    cases = pd.read_parquet(path, columns=["user_id", "segment"])
    if segment:
        cases = cases[cases["segment"] == segment]
    return cases["user_id"].astype(str).tolist()


def variant(record: dict) -> str:
    """The model name plus the settings a run changed from the model's defaults (not its seed), e.g.
    "lmkg (use_source=False)": runs of one variant differ only by seed, so their spread is seed noise."""
    defaults = getattr(MODELS.get(record["model"]), "defaults", {})
    changed = [f"{k}={v}" for k, v in (record["config"].get("params") or {}).items()
               if k in defaults and k != "seed" and v != defaults[k]]
    return f"{record['model']} ({', '.join(changed)})" if changed else record["model"]


def run_curves(run_id: str, workspace=None) -> pd.DataFrame:
    """A finished run's training curves (epoch, loss, valid ndcg@10 per stage); empty for closed-form models."""
    path = Store(workspace).run_dir(run(run_id, workspace)["id"]) / "curves.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def run(run_id: str, workspace=None) -> dict:
    record = Store(workspace).run(run_id)
    if record is None:
        raise CrossLensError(f"no run '{run_id}' in this workspace; `python -m engine runs` lists them.")
    return record


def load(run_id: str, workspace=None):
    """(run record, scenario, fitted model) of a finished run, from its stored weights; no retraining."""
    store = Store(workspace)
    record = run(run_id, workspace)
    if record["status"] != "done":
        raise CrossLensError(f"run {run_id} is {record['status']}, not done; only finished runs can be used.")
    if record["config"].get("peer"):
        raise CrossLensError(f"run {run_id} is an external peer ({record['config']['peer']}); its model is not kept, "
                             f"only its metrics, so it cannot recommend.")
    sc = _scenario_of(store, record)
    tensors = load_file(str(store.run_dir(run_id) / "weights.safetensors"))
    model = MODELS[record["model"]].from_state(record["config"]["params"], sc, tensors)
    return record, sc, model


def _scenario_of(store: Store, record: dict) -> scenarios.Scenario:
    """A run's scenario, rebuilt from the datasets it was trained on (which must not have changed since)."""
    spec = record["scenario"]
    for name, version in spec["versions"].items():
        current = store.dataset(name)
        if current is None or current["version"] != version:
            raise CrossLensError(f"dataset '{name}' was deleted or re-ingested after run {record['id']}; "
                                 f"train a new run on the current data.")
    return scenarios.build(store, spec)


def export_run(run_id: str, out, fmt: str = "recbole", workspace=None) -> Path:
    """Write the scenario of a stored run for an external library (RecBole atomic files); returns the folder."""
    from . import export
    if fmt not in export.FORMATS:
        raise CrossLensError(f"unknown export format '{fmt}'; choose one of: {', '.join(export.FORMATS)}.")
    store = Store(workspace)
    return export.export_recbole(_scenario_of(store, run(run_id, workspace)), out)


def recommend(run_id: str, user: str, k: int = 10, workspace=None) -> dict:
    """Top-k target items for a user, as the run's model sees them (see LoadedRun.recommend)."""
    return LoadedRun(run_id, workspace).recommend(user, k)


class LoadedRun:
    """A finished run's model on its scenario, loaded once, for any number of recommendations and explanations.

    A user with a test case is scored from that case's history (so held-out hits can be shown); any other user
    from their whole training history. Their known target items are never recommended.
    """

    def __init__(self, run_id: str, workspace=None):
        self.record, self.sc, self.model = load(run_id, workspace)
        self.id, self._explainer = run_id, None

    def recommend(self, user: str, k: int = 10) -> dict:
        sc = self.sc
        case = sc.user_case(sc.user(user))
        if not 1 <= k <= sc.n_target:
            raise CrossLensError(f"k must be between 1 and {sc.n_target}, got {k}.")
        history = case.history if len(case.history) else np.array([-1])
        batch = scenarios.Batch(torch.tensor([case.user]), torch.as_tensor(history)[None])
        with torch.no_grad():
            scores = self.model.score(batch.to(self.model.device)).float().cpu()[0].clone()
        scores[torch.as_tensor(case.exclude, dtype=torch.long)] = -torch.inf
        top = scores.topk(k)
        items = sc.items.iloc[top.indices.numpy()]
        relevant = set(case.relevant.tolist())
        recs = [{"item_id": i, "title": t, "domain": sc.target, "score": float(s), "held_out": j in relevant}
                for i, t, s, j in zip(items["item_id"], items["title"], top.values.tolist(), top.indices.tolist())]
        return {"run_id": self.id, "user": str(user), "basis": case.basis, "recommendations": recs}

    def history(self, user: str) -> pd.DataFrame:
        """The items the user's recommendations are scored from, oldest first: position, item_id, title, domain."""
        case = self.sc.user_case(self.sc.user(user))
        items = self.sc.items.iloc[case.history]
        return pd.DataFrame({"position": np.arange(1, len(items) + 1), "item_id": items["item_id"].to_numpy(),
                             "title": items["title"].to_numpy(), "domain": items["domain"].to_numpy()})

    def explain(self, user: str, item: str, method: str = "both", **options) -> dict:
        from . import explain as explanations
        if self._explainer is None:
            self._explainer = explanations.Explainer(self.sc, self.model, self.id)
        return self._explainer.explain(user, item, method, **options)


def compare(run_a: str, run_b: str, metric: str = "ndcg@10", workspace=None) -> dict:
    """Paired Wilcoxon signed-rank test of two runs on the same scenario, per segment (evaluate.segment_masks) with
    cases in both runs; the item and user-activity buckets only where both runs stored their columns."""
    store = Store(workspace)
    a, b = run(run_a, workspace), run(run_b, workspace)
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



# ---- explanations and embedding maps -------------------------------------------------------------------------------
def explain(run_id: str, user: str, item: str, method: str = "shap", workspace=None, nsamples: int | None = None,
            lime_samples: int | None = None, seed: int = 0) -> dict:
    """Why the run's model scores `item` (a target item id) for `user`: SHAP and/or LIME attributions over the
    user's history items and the item's knowledge-graph entities, with checks of how faithful they are."""
    from . import explain as explanations
    return explanations.Explainer.load(run_id, workspace).explain(
        user, item, method, explanations.SHAP_SAMPLES if nsamples is None else nsamples,
        explanations.LIME_SAMPLES if lime_samples is None else lime_samples, seed)


def explain_bench(run_id: str, n: int = 100, seed: int = 0, workspace=None, progress=None) -> dict:
    """Explain the top-1 recommendation of n seeded test users with SHAP and LIME and summarise the checks."""
    from . import explain as explanations
    return explanations.bench(run_id, n, seed, workspace, progress=progress)


def compute_maps(run_id: str, workspace=None, max_points: int = 30000, seed: int = 0) -> dict:
    """(Re)compute a finished run's embedding maps, neighbours and alignment figure; returns the summary."""
    from . import maps
    return maps.compute_maps(run_id, workspace, max_points, seed)

# ---- the default workspace ------------------------------------------------------------------------------------------
def setup(workspace=None, progress_factory=None, log=print, background: bool = False) -> None:
    """Ingest the shipped dataset if missing, and train the default runs if the workspace has none (in the
    background: as jobs the dashboard shows, unless some job is already at work)."""
    store = Store(workspace)
    for folder in sorted(DEFAULT_DATASET.iterdir()):
        if folder.is_dir() and store.dataset(folder.name) is None:
            log(f"ingesting the shipped '{folder.name}' domain ...")
            ingest(folder.name, folder / "interactions.parquet", folder / "items.parquet", workspace=workspace)
    if any(r["status"] == "done" for r in store.runs()):
        return
    if background:
        if not any(j["status"] in JOB_ACTIVE for j in jobs(workspace)):
            for source, target, model in DEFAULT_RUNS:
                log(f"training {model} ({source} -> {target}) in the background: job "
                    f"{start_training(source, target, model, workspace=workspace)['id']}")
    else:
        for source, target, model in DEFAULT_RUNS:
            log(f"training {model} ({source} -> {target}) ...")
            progress = progress_factory(model) if progress_factory else None
            record = train(source, target, model, workspace=workspace, progress=progress)
            getattr(progress, "close", lambda: None)()
            log(f"  run {record['id']}: warm ndcg@10 {record['metrics']['warm']['ndcg@10']:.4f}, "
                f"cold ndcg@10 {record['metrics']['cold']['ndcg@10']:.4f}")
