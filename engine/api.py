"""The facade the CLI, the dashboard and notebooks call; nothing inside engine/ imports it. Each function takes
`workspace` (a folder, default ./workspace or $CROSSLENS_WORKSPACE, or a Store from `open_workspace`) and raises
CrossLensError / DatasetError with a readable message on bad input. The run lifecycle lives in engine.runs, the
background jobs in engine.jobs; this module adds datasets, explanations and the default workspace."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import data, deliver, export
from . import tune as tuning
from . import jobs as background
from .data import DatasetError  # noqa: F401  (bad uploads: the problems, each with file, rows, column and fix)
from .errors import CrossLensError
from .evaluate import SET_METRICS, segment_groups  # noqa: F401  (segment names grouped for display)
from .jobs import (BASELINES, cancel_job, clock, curves as job_curves, job, jobs, log_tail as job_log,  # noqa: F401
                   missing_baselines, start_derive, start_maps)
from .maps import domain_neighbours, read_maps  # noqa: F401
from .estimate import estimate  # noqa: F401  (a request's time on this machine, from its finished runs)
from .models import MODELS
from .models.settings import PRESETS, preset
from .models.base import explainable, learns_vectors
from .profile import dataset_profile, domain_overlap, runs_using, shared_users  # noqa: F401  (read-only views)
from .request import TrainRequest, parse_settings  # noqa: F401
from .runs import (LoadedRun, compare, compute_maps, derive, explainer, load, run, run_curves, runs,  # noqa: F401
                   runs_table, scenario_of, scenario_preview, test_users, variant)
from .runs import train as runs_train
from .spreadsheet import safe_table  # noqa: F401  (every table shown or downloaded)
from .store import JOB_ACTIVE, open_workspace, workspace_path  # noqa: F401  (open_workspace: for notebooks)
from .tune import SEGMENTS as TUNE_SEGMENTS, TuneRequest, read_study, space_words, studies  # noqa: F401

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_DATASET = ASSETS / "data" / "amazon-arts-office"
DEFAULT_RUNS = [("arts", "office", "pop"), ("arts", "office", "itemknn"), ("arts", "office", "lmkg")]


def workspace_folder(workspace=None) -> str:
    """The workspace's absolute folder (default ./workspace or $CROSSLENS_WORKSPACE)."""
    return str(workspace_path(workspace).resolve())


def models() -> dict[str, dict]:
    """The model catalogue: per model, its one-line description, default settings and capabilities (trains: has
    epochs; explainable: engine.explain can explain its recommendations; item_vectors: its runs get maps; search:
    the settings engine.tune chooses, each with where it draws them from; post_training: the settings a trained
    run can be derived with)."""
    return {name: {"description": cls.description, "defaults": dict(cls.defaults), "help": cls.setting_help(),
                   "search": {k: space_words(s, cls.defaults[k]) for k, s in cls.search.items()},
                   "presets": {p: preset(p, cls.defaults) for p in PRESETS},
                   "trains": "epochs" in cls.defaults,
                   "explainable": explainable(cls), "item_vectors": learns_vectors(cls),
                   "post_training": list(cls.post_training)}
            for name, cls in MODELS.items()}


# ---- datasets ---------------------------------------------------------------------------------------------------
def ingest(domain: str, interactions, items=None, kg=None, workspace=None, replace: bool = False) -> dict:
    """Validate and store one domain dataset. An existing name needs `replace`: the upload becomes its current
    version, and runs trained on the old one keep it. Nothing is written on error."""
    return data.ingest(open_workspace(workspace), domain, interactions, items, kg, replace)


def datasets(workspace=None) -> list[dict]:
    return open_workspace(workspace).datasets()


def upload_folder(workspace=None):
    """A context manager: a private folder inside the workspace to put uploaded files in while they are ingested."""
    return open_workspace(workspace).upload_folder()


def delete_dataset(name: str, workspace=None) -> None:
    """Remove a dataset and every stored version of it. Its runs stay (their metrics remain comparable) but can no
    longer be loaded."""
    store = open_workspace(workspace)
    store.delete_dataset(store.require_dataset(name)["name"])


# ---- training ---------------------------------------------------------------------------------------------------
def train(source: list[str] | str, target: str, model: str, seed: int = 0, cold_fraction: float = 0.2,
          epochs: int | None = None, settings: dict | None = None, sampled: int | None = None,
          workspace=None, progress=None, maps: bool = True, on_run=None) -> dict:
    """Train, evaluate and store a run (engine.runs.train of this TrainRequest); returns the run record."""
    request = TrainRequest(source, target, model, seed, cold_fraction, epochs, settings or {}, sampled, maps)
    return runs_train(request, workspace, progress, on_run)


def start_training(source: list[str] | str, target: str, model: str, seed: int = 0, cold_fraction: float = 0.2,
                   epochs: int | None = None, settings: dict | None = None, maps: bool = True,
                   workspace=None) -> dict:
    """Launch a training run as a background job (engine.jobs); returns the job record. A request that cannot
    work raises here, before any process or job exists."""
    return background.start_training(TrainRequest(source, target, model, seed, cold_fraction, epochs, settings or {},
                                            None, maps), workspace)


def tune(source: list[str] | str, target: str, model: str, trials: int = 20, budget_minutes: float | None = None,
         segment: str = "all", seed: int = 0, cold_fraction: float = 0.2, epochs: int | None = None,
         settings: dict | None = None, workspace=None, progress=None) -> dict:
    """Choose the model's settings on validation (engine.tune; `settings` stay fixed), then evaluate the best trial
    once on test; returns the study's record, its test run under "test_run"."""
    return tuning.tune(_tune_request(source, target, model, trials, budget_minutes, segment, seed, cold_fraction,
                                     epochs, settings), workspace, progress)


def start_tuning(source: list[str] | str, target: str, model: str, trials: int = 20,
                 budget_minutes: float | None = None, segment: str = "all", seed: int = 0, cold_fraction: float = 0.2,
                 epochs: int | None = None, settings: dict | None = None, workspace=None) -> dict:
    """tune() as a background job; returns the job record. A request that cannot work raises here, before any job
    exists."""
    return background.start_tuning(_tune_request(source, target, model, trials, budget_minutes, segment, seed,
                                                 cold_fraction, epochs, settings), workspace)


def _tune_request(source, target, model, trials, budget_minutes, segment, seed, cold_fraction, epochs,
                  settings) -> TuneRequest:
    train_request = TrainRequest(source, target, model, seed, cold_fraction, epochs, settings or {}, None, False)
    return TuneRequest(train_request, trials, budget_minutes, segment)


# ---- runs ---------------------------------------------------------------------------------------------------------
def delete_run(run_id: str, workspace=None) -> None:
    """Remove a run (not one still training), its metrics and its files."""
    open_workspace(workspace).delete_run(run_id)


def label_run(run_id: str, name: str | None = None, add_tags=(), remove_tags=(), note: str | None = None,
              workspace=None) -> dict:
    """Name, tag or note a run (None leaves a name or note as it is, "" clears it); returns the run."""
    return open_workspace(workspace).label_run(run_id, name, add_tags, remove_tags, note)


def metrics_long(workspace=None) -> pd.DataFrame:
    """Every finished run's metrics in long form: run, segment, metric (e.g. ndcg), k, value; join them to
    runs_table() on `run` for the scenario and model."""
    rows = [(r["id"], segment, name, value) for r in runs(workspace) if r["status"] == "done"
            for segment, values in (r["metrics"] or {}).items() for name, value in values.items()]
    table = pd.DataFrame(rows, columns=["run", "segment", "name", "value"])
    split = table["name"].str.split("@", n=1, expand=True).reindex(columns=[0, 1])
    table["metric"], table["k"] = split[0], pd.to_numeric(split[1], errors="coerce").astype("Int64")
    return table.drop(columns="name")[["run", "segment", "metric", "k", "value"]]


def export_run(run_id: str, out, fmt: str = "recbole", workspace=None) -> Path:
    """Write the scenario of a stored run for an external library (RecBole atomic files); returns the folder."""
    if fmt not in export.FORMATS:
        raise CrossLensError(f"unknown export format '{fmt}'; choose one of: {', '.join(export.FORMATS)}.")
    store = open_workspace(workspace)
    return export.export_recbole(scenario_of(store, store.require_run(run_id)), out)


def recommend(run_id: str, user: str, k: int = 10, workspace=None) -> dict:
    """Top-k target items for a user, as the run's model sees them (see LoadedRun.recommend)."""
    return LoadedRun(run_id, workspace).recommend(user, k)


def recommend_to_file(run_id: str, out, k: int = 10, reasons: bool = False, histories=None, workspace=None,
                      progress=None) -> dict:
    """Top-k recommendations of every user of the run (or of a `histories` file's users) into a .csv or .parquet
    file; see engine.deliver. The output name is checked before the run is loaded."""
    deliver.check_output(out)
    return LoadedRun(run_id, workspace).recommend_to_file(out, k, reasons, histories, progress)


# ---- explanations and embedding maps -------------------------------------------------------------------------------
def explain(run_id: str, user: str, item: str, method: str = "shap", workspace=None, nsamples: int | None = None,
            lime_samples: int | None = None, seed: int = 0) -> dict:
    """Why the run's model scores `item` (a target item id) for `user`: SHAP and/or LIME attributions over the
    user's history items and the item's knowledge-graph entities, with checks of how faithful they are."""
    from . import explain as explanations  # shap takes seconds to import: only where explanations are asked for
    return explainer(run_id, workspace).explain(
        user, item, method, explanations.SHAP_SAMPLES if nsamples is None else nsamples,
        explanations.LIME_SAMPLES if lime_samples is None else lime_samples, seed)


def explain_bench(run_id: str, n: int = 100, seed: int = 0, workspace=None, progress=None) -> dict:
    """Explain the top-1 recommendation of n seeded test users with SHAP and LIME and summarise the checks."""
    from . import explain as explanations  # see explain()
    return explanations.bench(explainer(run_id, workspace), n, seed, progress=progress)


# ---- the default workspace ------------------------------------------------------------------------------------------
def setup(workspace=None, progress_factory=None, log=print, background: bool = False) -> None:
    """Ingest the shipped dataset if missing, and train the default runs if the workspace has none (in the
    background: as jobs the dashboard shows, unless some job is already at work)."""
    store = open_workspace(workspace)
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
