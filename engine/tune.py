"""Choosing a model's settings on the validation cases with Optuna; the test split is read once, at the end.

Every trial is a run: the model fitted with the trial's settings on the scenario with its test cases sealed
(Scenario.without_test), evaluated on the validation cases and stored with status "trial" (engine.runs). The TPE
sampler is seeded by the scenario's seed, and its first trial is the model's defaults, so the best trial is never
worse on validation than them. A trial whose validation curve (its first training stage's NDCG@10 per epoch) falls
below the median of the earlier trials at the same epoch, from its fourth epoch on, is pruned. The best trial's
model is then evaluated on the test cases once, as a new finished run that Compare shows beside the others. The
study's record (Store.study_path) is rewritten after every trial, so the dashboard and `python -m engine studies`
follow it live.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, replace

from . import evaluate, runs
from . import scenario as scenarios
from .errors import CrossLensError
from .jobs import clock
from .models import MODELS
from .request import TrainRequest
from .store import Store, open_workspace, process_start, same_process, write_json

SEGMENTS = ("all", "warm", "cold")  # the validation users whose NDCG@10 a study maximises
PRUNE_AFTER = 3  # trials finished before any is pruned, so the median means something
PRUNE_WARMUP = 3  # epochs of a trial before it may be pruned: a learning rate that starts slowly may end best
TRIAL_ERRORS = (ValueError, RuntimeError)  # a trial that fails so (a bad combination, a diverging fit) is skipped


@dataclass(frozen=True)
class TuneRequest:
    train: TrainRequest                  # the scenario and model; settings it gives are kept fixed, not tuned
    trials: int = 20
    budget_minutes: float | None = None  # no new trial starts after this; the one under way finishes
    segment: str = "all"

    def check(self, workspace=None) -> tuple[dict, dict]:
        """(scenario spec, the search space left to tune) of a request that can work, else a CrossLensError."""
        spec, _ = self.train.check(workspace)
        if not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 1:
            raise CrossLensError(f"trials must be a whole number of at least 1, got {self.trials!r}.")
        budget = self.budget_minutes
        if budget is not None and not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise CrossLensError(f"the budget is a number of minutes above 0, got {budget!r}.")
        if self.segment not in SEGMENTS:
            raise CrossLensError(f"segment must be one of {', '.join(SEGMENTS)}, got {self.segment!r}.")
        space = {k: v for k, v in MODELS[self.train.model].search.items() if k not in self.train.model_settings()}
        if not space:
            fixed = MODELS[self.train.model].search
            raise CrossLensError(
                f"'{self.train.model}' has no settings left to tune: " + (
                    f"every tuned one ({', '.join(fixed)}) is fixed by the request." if fixed else
                    "it has none that tuning chooses (content chooses its own on validation; pop has none)."))
        return spec, space

    def to_dict(self) -> dict:
        """One flat dict, the training request's fields first (a job's spec)."""
        return {**self.train.to_dict(), "trials": self.trials, "budget_minutes": self.budget_minutes,
                "segment": self.segment}

    @classmethod
    def from_dict(cls, d: dict) -> "TuneRequest":
        return cls(TrainRequest.from_dict(d), d.get("trials", 20), d.get("budget_minutes"), d.get("segment", "all"))


@dataclass
class Study:
    """What a tuning study has done so far; written as JSON after every trial."""
    id: str
    request: dict
    space: dict                          # setting -> where it is drawn from, in words
    created: float = field(default_factory=time.time)
    status: str = "running"              # running, done, failed, cancelled
    message: str = ""
    trials: list = field(default_factory=list)  # number, params, state, run, value, curve, seconds, error
    best: dict | None = None             # the best trial's number, run, value and params
    defaults_value: float | None = None  # trial 1: the model's defaults
    test_run: str | None = None          # the best trial's model evaluated on the test cases
    pid: int = field(default_factory=os.getpid)  # the process running the study, to see that it died
    process_start: str | None = None

    def save(self, store: Store) -> None:
        write_json(asdict(self), store.study_path(self.id))


def tune(request: TuneRequest, workspace=None, progress=None, on_run=None) -> dict:
    """Run the study (see the module's text); returns its record. `progress` gets each trial's training reports
    with "trial": "k of N ..."; `on_run(run_id)` each trial's run as it is registered, then the test run's."""
    import optuna  # half a second to import: only where a study runs
    store = open_workspace(workspace)
    spec, space = request.check(store)
    sc = scenarios.build(store, spec)
    evaluate.check_scenario(sc)
    if request.segment != "all" and not (sc.valid.segment == request.segment).any():
        raise CrossLensError(f"this scenario has no {request.segment} validation users to tune for; choose "
                             f"another segment.")
    defaults = MODELS[request.train.model].defaults
    study = Study(time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], request.to_dict(),
                  {k: space_words(s, defaults[k]) for k, s in space.items()}, process_start=process_start(os.getpid()))
    study.save(store)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the study's own record and progress say what happens
    search = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=request.train.seed),
                                 pruner=optuna.pruners.MedianPruner(PRUNE_AFTER, PRUNE_WARMUP))
    search.enqueue_trial({k: defaults[k] for k in space if defaults[k] is not None})  # None: chosen in fit
    objective = _Objective(store, spec, request, space, sc.without_test(), study, progress, on_run, optuna)
    try:
        search.optimize(objective, n_trials=request.trials, catch=TRIAL_ERRORS,
                        timeout=request.budget_minutes * 60 if request.budget_minutes else None)
        finished = [t for t in study.trials if t["state"] == "complete"]
        if not finished:
            raise CrossLensError("no trial finished, so there is nothing to evaluate on test; the trials' errors "
                                 "are in the study: " + "; ".join(t.get("error", t["state"]) for t in study.trials))
        best = max(finished, key=lambda t: t["value"])  # the first of equals: the defaults, where they tie
        study.best = {k: best[k] for k in ("number", "run", "value", "params")}
        study.defaults_value = study.trials[0]["value"] if study.trials[0]["state"] == "complete" else None
        if progress:
            progress({"stage": "evaluating the best trial on the test cases"}, 1.0)
        record = runs.from_weights(store, store.require_run(best["run"]), sc,
                                   config={"study": study.id, "trial_run": best["run"]})
        store.label_run(record["id"], name=f"{request.train.model} tuned (study {study.id})")
        if on_run:
            on_run(record["id"])
        study.test_run, study.status = record["id"], "done"
        study.message = (f"{len(finished)} trial(s) finished of {len(study.trials)}; the best (trial {best['number']}"
                         f") has validation NDCG@10 {best['value']:.4f}; its test run is {record['id']}")
    except KeyboardInterrupt:
        study.status, study.message = "cancelled", "cancelled by the user"
        raise
    except BaseException as err:
        study.status, study.message = "failed", str(err)
        raise
    finally:
        study.save(store)
    return asdict(study)


class _Objective:
    """One trial: a run fitted with the trial's settings on the sealed scenario, scored on validation."""

    def __init__(self, store, spec, request, space, sealed, study, progress, on_run, optuna):
        self.store, self.spec, self.request, self.space, self.sealed = store, spec, request, space, sealed
        self.study, self.progress, self.on_run, self.optuna = study, progress, on_run, optuna
        self.started = time.time()

    def __call__(self, trial) -> float:
        defaults = MODELS[self.request.train.model].defaults
        # trial 1 is the defaults: a setting whose default is None (chosen by the model on validation) stays None
        params = {k: None if trial.number == 0 and defaults[k] is None else _suggest(trial, k, s, defaults[k])
                  for k, s in self.space.items()}
        request = replace(self.request.train, settings={**self.request.train.settings, **params}, maps=False)
        entry = {"number": trial.number + 1, "params": params, "state": "running", "run": None, "value": None,
                 "curve": [], "seconds": None}
        self.study.trials.append(entry)
        self.study.save(self.store)
        started = time.time()
        try:
            _, recommender = request.check(self.store)
            record = runs.fit_and_store(self.store, self.spec, request, recommender, self.sealed,
                                        self._reporter(trial, entry), self._attach(entry), split="valid",
                                        config={"study": self.study.id, "trial": entry["number"]})
        except self.optuna.TrialPruned as why:
            entry.update(state="pruned", error=str(why))
            self.store.fail_run(entry["run"], "pruned", str(why))
            raise
        except KeyboardInterrupt:
            entry["state"] = "cancelled"
            raise
        except Exception as err:
            entry.update(state="failed", error=f"{type(err).__name__}: {err}")
            raise
        finally:
            entry["seconds"] = time.time() - started
            self.study.save(self.store)
        entry.update(state="complete", value=record["metrics"][f"valid {self.request.segment}"]["ndcg@10"])
        self.study.save(self.store)
        return entry["value"]

    def _attach(self, entry):
        def attach(run_id: str) -> None:
            entry["run"] = run_id
            if self.on_run:
                self.on_run(run_id)
        return attach

    def _reporter(self, trial, entry):
        """The fit's progress callback: reports the first training stage's validation curve to the pruner and
        passes every report on with where the study is."""
        first_stage = []

        def report(info: dict, fraction: float) -> None:
            if "epoch" in info and "valid_ndcg@10" in info:
                first_stage[:] = first_stage or [info["stage"]]
                if info["stage"] == first_stage[0]:
                    entry["curve"].append(info["valid_ndcg@10"])
                    trial.report(info["valid_ndcg@10"], len(entry["curve"]))  # epochs may be validated in parts
                    if trial.should_prune():
                        raise self.optuna.TrialPruned(f"pruned after epoch {info['epoch']}: its validation NDCG@10 "
                                                      f"{info['valid_ndcg@10']:.4f} is below the median of the "
                                                      f"earlier trials there")
            if self.progress:
                self.progress({**info, "trial": self._where(entry["number"])}, fraction)
        return report

    def _where(self, number: int) -> str:
        """'k of N', with the time the remaining trials should take from the finished ones' times."""
        total, budget = self.request.trials, self.request.budget_minutes
        times = [t["seconds"] for t in self.study.trials if t["seconds"] is not None]
        if not times:
            return f"{number} of {total}"
        left = sum(times) / len(times) * (total - number + 1)
        if budget:
            left = min(left, max(budget * 60 - (time.time() - self.started), 0))
        return f"{number} of {total} (about {clock(left)} left for the study)"


def _suggest(trial, name: str, space, default):
    if space.choices:
        return trial.suggest_categorical(name, list(space.choices))
    if isinstance(default if default is not None else space.low, int) and not isinstance(default, bool):
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, float(space.low), float(space.high), log=space.log)


def space_words(space, default) -> str:
    """Where a setting is drawn from, in words, e.g. "0.001 to 0.05 (log scale), default 0.005"."""
    said = "chosen on validation" if default is None else f"{default:g}" if not space.choices else str(default)
    if space.choices:
        return "one of " + ", ".join(map(str, space.choices)) + f", default {said}"
    return f"{space.low:g} to {space.high:g}{' (log scale)' if space.log else ''}, default {said}"


def studies(workspace=None) -> list[dict]:
    """Every tuning study's record, oldest first; one still 'running' whose process is gone (killed, or the
    machine restarted) is marked failed first."""
    store = open_workspace(workspace)
    found = store.studies()
    for record in found:
        pid = record.get("pid")  # records written before studies kept their process have none to check
        if record["status"] == "running" and pid and not same_process(pid, record["process_start"]):
            record.update(status="failed", message="the tuning process ended before the study finished (killed?)")
            write_json(record, store.study_path(record["id"]))
    return found


def read_study(study_id: str, workspace=None) -> dict:
    found = next((s for s in studies(workspace) if s["id"] == study_id), None)
    if found is None:
        raise CrossLensError(f"no study '{study_id}' in this workspace; `python -m engine studies` lists them.")
    return found
