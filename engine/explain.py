"""Why was this item recommended to this user? SHAP and LIME attributions over what the model really sees.

The interpretable features of a (user, item) pair are the positions of the user's history (the items the model
reads) and the knowledge-graph entities of the item (the slots its knowledge vector attends over). A feature is
removed by taking it out of the model's input, and the model itself re-scores all perturbations of one
explanation in one batched pass (`score_perturbed` of the model): the attributions describe the model, not a
proxy of it.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from lime.lime_tabular import LimeTabularExplainer
from scipy import stats

with warnings.catch_warnings():  # shap's plotting colours use matplotlib calls due for deprecation; we plot nothing
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap

from . import explain_words as words
from .device import cpu_cores
from .errors import CrossLensError
from .evaluate import mask_known
from .models.base import explainable
from .scenario import Batch

METHODS = ("shap", "lime", "both")
SHAP_SAMPLES = 1000
LIME_SAMPLES = 2000
DELETED = 3             # features the deletion check removes
RANDOM_DELETIONS = 100  # random removals the top features are compared with (all of them when there are fewer)


def cannot_explain(model: str, run_id: str) -> str:
    return (f"run {run_id or '(unsaved)'} is a '{model}' model, which does not score from the user's history, so its "
            f"recommendations cannot be explained by removing history items or item attributes; explain an lmkg or "
            f"itemknn run.")


@dataclass
class Pair:
    """One (user, item) to explain: the history the model scores it from, and the features' names."""
    user: int               # global user index
    user_id: str
    basis: str              # where the history comes from
    history: np.ndarray     # global item indices, oldest first: the first features
    item: int               # target item index
    exclude: np.ndarray     # target items never recommended to the user (they know them)
    labels: list[str]       # per feature: "title (domain)" or "relation: value"
    features: list[dict]    # per feature: kind ("history" | "entity") and what it is

    @property
    def n_history(self) -> int:
        return len(self.history)


class Explainer:
    """A fitted model on its scenario (usually a finished run's, loaded once), explaining any number of its
    recommendations."""

    def __init__(self, scenario, model, run_id: str = ""):
        if not explainable(type(model)):
            raise CrossLensError(cannot_explain(model.name, run_id))
        self.sc, self.model, self.run_id = scenario, model, run_id
        with torch.no_grad():
            model.prepare()  # what every score shares, computed once
        self._target = {str(i): n for n, i in enumerate(scenario.items["item_id"].iloc[: scenario.n_target])}

    # ---- what is explained ----------------------------------------------------------------------------------
    def pair(self, user, item) -> Pair:
        """The user's history (their test case's if they have one, as recommend() does, else their training
        history, as far as the model reads it) and the item's entity slots."""
        sc = self.sc
        case = sc.user_case(sc.user(user))
        index = self.item_index(item)
        history = self.model.read_history(case.history)
        titles, domains = sc.items["title"].to_numpy(), sc.items["domain"].to_numpy()
        ids = sc.items["item_id"].to_numpy()
        labels = [f"{titles[i]} ({domains[i]})" for i in history]
        features = [{"kind": "history", "position": p, "item_id": str(ids[i]), "domain": domains[i]}
                    for p, i in enumerate(history)]
        for relation, entity in self.model.entity_slots(index):
            value = entity.removeprefix(f"{relation}=")
            labels.append(f"{relation}: {value}")
            features.append({"kind": "entity", "relation": relation, "value": value})
        return Pair(case.user, str(user), case.basis, history, index, case.exclude, labels, features)

    def item_index(self, item) -> int:
        index = self._target.get(str(item))
        if index is not None:
            return index
        items = self.sc.items
        elsewhere = items.loc[items["item_id"].astype(str) == str(item), "domain"]
        if len(elsewhere):
            raise CrossLensError(f"item '{item}' is a '{elsewhere.iloc[0]}' item; run {self.run_id} "
                                 f"recommends '{self.sc.target}' items, so explain one of those.")
        raise CrossLensError(f"item '{item}' is not in the domains of run {self.run_id} "
                             f"({', '.join(self.sc.domains)}); check the id.")

    def scorer(self, pair: Pair):
        """(P, F) 0/1 masks -> (P,) model scores, all rows in one batched call to the model."""
        history = torch.as_tensor(pair.history, dtype=torch.long)
        n = pair.n_history

        def predict(masks: np.ndarray) -> np.ndarray:
            keep = torch.as_tensor(np.asarray(masks) > 0.5)
            with torch.no_grad():
                return self.model.score_perturbed(history, pair.item, keep[:, :n], keep[:, n:]).double().cpu().numpy()
        return predict

    def score_scale(self, pair: Pair) -> float:
        """The spread (std) of the model's scores over all target items for this history: errors are relative
        to it."""
        history = torch.as_tensor(pair.history if len(pair.history) else [-1], dtype=torch.long)[None]
        with torch.no_grad():
            scores = self.model.score(Batch(torch.tensor([pair.user]), history).to(self.model.device))
        return float(scores.float().std())

    # ---- explanations ---------------------------------------------------------------------------------------
    def explain(self, user, item, method: str = "shap", nsamples: int = SHAP_SAMPLES,
                lime_samples: int = LIME_SAMPLES, seed: int = 0) -> dict:
        if method not in METHODS:
            raise CrossLensError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}.")
        for name, value in (("nsamples", nsamples), ("lime samples", lime_samples)):
            if value < 2:
                raise CrossLensError(f"{name} must be at least 2, got {value}.")
        return self.explain_pair(self.pair(user, item), method, nsamples, lime_samples, seed)

    def explain_pair(self, pair: Pair, method: str = "shap", nsamples: int = SHAP_SAMPLES,
                     lime_samples: int = LIME_SAMPLES, seed: int = 0) -> dict:
        n_features = len(pair.labels)
        item_row = self.sc.items.iloc[pair.item]
        if n_features == 0:
            raise CrossLensError(f"user '{pair.user_id}' has no history and item '{item_row['item_id']}' no "
                                 f"knowledge-graph entities: there is nothing to attribute the score to.")
        predict = self.scorer(pair)
        score, base = predict(np.vstack([np.ones(n_features), np.zeros(n_features)]))
        result = {"run_id": self.run_id, "model": self.model.name, "user": pair.user_id,
                  "item_id": str(item_row["item_id"]), "title": item_row["title"], "basis": pair.basis,
                  "history_items": pair.n_history, "entities": n_features - pair.n_history,
                  "score": float(score), "base_value": float(base), "score_scale": self.score_scale(pair)}
        attributions = {}
        if method in ("shap", "both"):
            started = time.perf_counter()
            values, expected = shap_attributions(predict, n_features, nsamples, seed)
            attributions["shap"] = values
            result["shap"] = {"nsamples": nsamples, "expected_value": expected,
                              "additivity_error": float(abs(base + values.sum() - score)),
                              "seconds": time.perf_counter() - started}
        if method in ("lime", "both"):
            started = time.perf_counter()
            values, fit = lime_attributions(predict, n_features, lime_samples, seed)
            attributions["lime"] = values
            result["lime"] = {"num_samples": lime_samples, **fit, "model_pred": float(score),
                              "seconds": time.perf_counter() - started}
        result["features"] = [{"label": label, **feature, **{m: float(v[i]) for m, v in attributions.items()}}
                              for i, (label, feature) in enumerate(zip(pair.labels, pair.features))]
        result["agreement"] = rank_agreement(attributions["shap"], attributions["lime"]) if method == "both" else None
        if method == "both":
            for feature, disagree in zip(result["features"], words.disagreements(*attributions.values())):
                feature["methods_disagree"] = bool(disagree)
        result["deletion"] = deletion_check(predict, float(score), attributions, pair.labels, seed)
        return {**result, **self.in_words(pair, result["title"], next(iter(attributions.items())))}

    def in_words(self, pair: Pair, title: str, attribution: tuple[str, np.ndarray]) -> dict:
        """The item's rank, a counterfactual (history positions to remove, with their labels) and the summary."""
        method, values = attribution
        rank, candidates = words.rank_of(self.model, pair.user, pair.history, pair.exclude, pair.item)
        counter = words.counterfactual(self.model, pair.user, pair.history, pair.exclude, pair.item,
                                       values[: pair.n_history], rank)
        if counter:
            counter["removed"] = [pair.labels[p] for p in counter["positions"]]
        kinds = [f["kind"] for f in pair.features]
        return {"rank": rank, "candidates": candidates, "counterfactual": counter,
                "summary": words.summary(title, self.sc.target, rank, candidates, pair.labels, kinds, values, method,
                                         counter)}


def shap_attributions(predict, n_features: int, nsamples: int, seed: int) -> tuple[np.ndarray, float]:
    """Kernel SHAP over the binary feature mask: background = every feature removed, instance = none removed."""
    explainer = shap.KernelExplainer(predict, np.zeros((1, n_features)))
    with _seeded_numpy(seed):  # KernelExplainer draws its coalitions from numpy's global generator
        values = explainer.shap_values(np.ones((1, n_features)), nsamples=nsamples, l1_reg=False, silent=True)
    return np.asarray(values, dtype=float).reshape(-1), float(np.ravel(explainer.expected_value)[0])


def lime_attributions(predict, n_features: int, num_samples: int, seed: int) -> tuple[np.ndarray, dict]:
    """LIME over the same binary mask: every feature categorical (kept / removed, each drawn half the time), all
    features in the local linear model. Returns the weights and the surrogate's fit."""
    explainer = LimeTabularExplainer(np.vstack([np.zeros(n_features), np.ones(n_features)]), mode="regression",
                                     categorical_features=list(range(n_features)), discretize_continuous=False,
                                     feature_selection="none", random_state=seed)
    exp = explainer.explain_instance(np.ones(n_features), predict, num_features=n_features, num_samples=num_samples)
    weights = np.zeros(n_features)
    for feature, weight in exp.local_exp[1]:  # in regression mode key 1 holds the weights, key 0 their negation
        weights[feature] = weight
    return weights, {"score": float(exp.score), "local_pred": float(np.ravel(exp.local_pred)[0]),
                     "intercept": float(exp.intercept[1])}


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two attributions (None when either is constant)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.spearmanr(a, b).statistic)


def deletion_check(predict, score: float, attributions: dict[str, np.ndarray], labels: list[str],
                   seed: int) -> dict | None:
    """Per method: the score drop when its top-DELETED features (highest attribution) are removed, against the
    mean drop over seeded random removals of as many features. None when there are too few features to choose."""
    n = len(labels)
    if n <= DELETED or not attributions:
        return None
    if math.comb(n, DELETED) <= RANDOM_DELETIONS:
        chosen = [list(c) for c in combinations(range(n), DELETED)]
    else:
        rng = np.random.default_rng(seed)
        chosen = [rng.choice(n, DELETED, replace=False) for _ in range(RANDOM_DELETIONS)]
    tops = {m: np.argsort(-v, kind="stable")[:DELETED] for m, v in attributions.items()}
    masks = np.ones((len(tops) + len(chosen), n))
    for row, removed in enumerate([*tops.values(), *chosen]):
        masks[row, removed] = 0
    drops = score - predict(masks)
    random_drop = float(drops[len(tops):].mean())
    return {m: {"removed": [labels[i] for i in top], "top_drop": float(drops[row]), "random_drop": random_drop,
                "wins": bool(drops[row] > random_drop)} for row, (m, top) in enumerate(tops.items())}


_GLOBAL_NUMPY = threading.Lock()  # numpy's global generator is one per process: one seeded user at a time


@contextmanager
def _seeded_numpy(seed: int):
    with _GLOBAL_NUMPY:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


# ---- the benchmark ------------------------------------------------------------------------------------------------
def bench(ex: Explainer, n: int = 100, seed: int = 0, nsamples: int = SHAP_SAMPLES, lime_samples: int = LIME_SAMPLES,
          progress=None) -> dict:
    """Explain the top-1 recommendation of n seeded test users with both methods; per method: how often the
    deletion check is won, SHAP's additivity error relative to the score scale, SHAP-LIME agreement, seconds."""
    if n < 1:
        raise CrossLensError(f"--n must be at least 1, got {n}.")
    sc, model, cases = ex.sc, ex.model, ex.sc.test
    rows = np.sort(np.random.default_rng(seed).choice(len(cases), min(n, len(cases)), replace=False))
    with torch.no_grad():
        model.prepare()
        scores = mask_known(model.score(sc.batch(cases, rows).to(model.device)), cases, rows)
    top = scores.argmax(1).numpy()
    results = []
    for k, (row, item) in enumerate(zip(rows, top)):
        started = time.perf_counter()
        result = ex.explain(sc.users[cases.user[row]], sc.items["item_id"].iloc[item], "both", nsamples,
                            lime_samples, seed)
        result["seconds"] = time.perf_counter() - started
        results.append(result)
        if progress:
            progress({"stage": "explaining", "cases": f"{k + 1}/{len(rows)}"}, (k + 1) / len(rows))
    return {"run_id": ex.run_id, "model": ex.model.name, "cases": len(results), "seed": seed,
            "nsamples": nsamples, "lime_samples": lime_samples, "cpu_threads": torch.get_num_threads(),
            "cpu_cores": cpu_cores(), "summary": summarise(results),
            "seconds_both_mean": float(np.mean([x["seconds"] for x in results])),
            "history_items": {"mean": float(np.mean([x["history_items"] for x in results])),
                              "max": int(max(x["history_items"] for x in results))},
            "features": {"mean": float(np.mean([len(x["features"]) for x in results])),
                         "max": int(max(len(x["features"]) for x in results))},
            "per_case": [per_case(x) for x in results]}


def per_case(x: dict) -> dict:
    """The figures of one explanation that the benchmark keeps."""
    row = {k: x[k] for k in ("user", "item_id", "history_items", "entities", "score", "score_scale", "agreement",
                             "seconds")}
    for m in ("shap", "lime"):
        row[f"{m}_seconds"] = x[m]["seconds"]
        row[f"{m}_wins"] = x["deletion"][m]["wins"] if x["deletion"] else None
    row["shap_additivity_error"], row["lime_r2"] = x["shap"]["additivity_error"], x["lime"]["score"]
    row["counterfactual_size"] = len(x["counterfactual"]["positions"]) if x["counterfactual"] else None
    row["counterfactual_verified"] = x["counterfactual"]["verified"] if x["counterfactual"] else None
    return row


def summarise(results: list[dict]) -> dict:
    """Per method: deletion wins (share of the cases where the check applies), additivity error relative to the
    score scale (SHAP), mean R^2 (LIME), rank agreement, mean and p95 seconds."""
    summary = {}
    agreement = [x["agreement"] for x in results if x["agreement"] is not None]
    for m in ("shap", "lime"):
        wins = [x["deletion"][m]["wins"] for x in results if x["deletion"]]
        seconds = np.array([x[m]["seconds"] for x in results])
        row = {"cases": len(results), "deletion_cases": len(wins),
               "deletion_win_share": float(np.mean(wins)) if wins else None,
               "agreement_mean": float(np.mean(agreement)) if agreement else None,
               "seconds_mean": float(seconds.mean()), "seconds_p95": float(np.percentile(seconds, 95))}
        if m == "shap":
            relative = [x["shap"]["additivity_error"] / max(x["score_scale"], 1e-12) for x in results]
            row["additivity_error_relative_mean"] = float(np.mean(relative))
            row["additivity_error_relative_max"] = float(np.max(relative))
        else:
            row["r2_mean"] = float(np.mean([x["lime"]["score"] for x in results]))
        summary[m] = row
    found = [x["counterfactual"] for x in results if x["counterfactual"]]
    summary["counterfactual"] = {"cases": len(results), "found_share": len(found) / max(len(results), 1),
                                 "verified_share": float(np.mean([c["verified"] for c in found])) if found else None,
                                 "size_mean": float(np.mean([len(c["positions"]) for c in found])) if found else None}
    return summary
