"""How long a training request should take on this machine, read from the runs it has finished before.

Each earlier run of the model gives its seconds per epoch (its first training stage's mean), the rest of its
training time (text embedding, later stages, calibration) and its evaluation time, scaled by the interactions of
the request's domains over those of the run's. A request capped at N epochs is then expected to take the rest plus
min(N, the epochs that run trained) epochs, and at most the rest plus N epochs; the median over the runs is given.
Runs on the same domains are preferred; with none, every run of the model counts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .request import TrainRequest
from .store import open_workspace


def estimate(request: TrainRequest, workspace=None) -> dict | None:
    """{"seconds", "at_most_seconds", "runs", "same_domains"} for the request, or None when this machine has no
    finished run of the model to measure by."""
    store = open_workspace(workspace)
    spec, model = request.check(store)
    sizes = {d["name"]: d["n_interactions"] for d in store.datasets()}
    domains = _domains(spec)
    past = [r for r in store.runs() if r["status"] == "done" and r["model"] == request.model
            and not r["config"].get("derived_from") and not r["config"].get("peer")
            and all(d in sizes for d in _domains(r["scenario"]))]
    same = [r for r in past if _domains(r["scenario"]) == domains]
    basis = same or past
    if not basis:
        return None
    cap = model.params.get("epochs")
    typical, most = [], []
    for r in basis:
        scale = sum(sizes[d] for d in domains) / sum(sizes[d] for d in _domains(r["scenario"]))
        path = store.run_dir(r["id"]) / "curves.parquet"
        curves = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["stage", "epoch", "seconds"])
        first = curves[curves["stage"] == curves["stage"].iloc[0]] if len(curves) else curves
        ran = float(first["epoch"].max()) if len(first) else 0.0  # epochs (a fraction: validated in parts)
        per_epoch = float(first["seconds"].sum()) / ran if ran else 0.0
        rest = max(r["train_seconds"] - float(curves["seconds"].sum()), 0.0) + r["eval_seconds"]
        typical.append(scale * (rest + per_epoch * (min(ran, cap) if cap else ran)))
        most.append(scale * (rest + per_epoch * (cap if cap else ran)))
    return {"seconds": float(np.median(typical)), "at_most_seconds": float(np.median(most)), "runs": len(basis),
            "same_domains": bool(same)}


def _domains(spec: dict) -> list[str]:
    return [spec["target"], *spec["source"]]
