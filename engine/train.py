"""The training loop shared by torch models: mini-batches, Adam, early stopping on validation NDCG@10, progress.

A model hands in a module with `calculate_loss(*batch)` and a function that yields an epoch's batches; the loop
keeps the best state seen on validation and restores it at the end.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Iterable

import numpy as np
import torch

from .evaluate import validation_ndcg


def fit_module(module: torch.nn.Module, epoch_batches: Callable[[np.random.Generator], Iterable[tuple]],
               recommender, scenario, params: dict, progress=None, stage: str = "train",
               valid_segment: str = "all") -> dict:
    """Train `module` in place; returns the history of (epoch, loss, valid ndcg@10)."""
    rng = np.random.default_rng(params["seed"])
    optimiser = torch.optim.Adam(module.parameters(), lr=params["lr"])
    best, best_state, since_best, history = -math.inf, None, 0, []
    for epoch in range(1, params["epochs"] + 1):
        started, total, n = time.time(), 0.0, 0
        module.train()
        for batch in epoch_batches(rng):
            loss = module.calculate_loss(*batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, n = total + loss.item(), n + 1
        module.eval()
        ndcg = validation_ndcg(recommender, scenario, valid_segment)
        history.append({"stage": stage, "epoch": epoch, "loss": total / max(n, 1), "valid_ndcg@10": ndcg,
                        "seconds": time.time() - started})
        if progress:
            progress(history[-1], epoch / params["epochs"])
        if ndcg > best:
            best, best_state, since_best = ndcg, copy.deepcopy(module.state_dict()), 0
        else:
            since_best += 1
            if since_best >= params["patience"]:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    return {"best_valid_ndcg@10": best, "epochs": history}


def shuffled_batches(rng: np.random.Generator, n: int, batch_size: int):
    """Index arrays covering range(n) in a random order."""
    order = rng.permutation(n)
    for lo in range(0, n, batch_size):
        yield order[lo:lo + batch_size]


def sample_negatives(rng: np.random.Generator, domain_start: np.ndarray, domain_size: np.ndarray) -> np.ndarray:
    """One random item per row from the row's own domain block [start, start + size)."""
    return domain_start + (rng.random(len(domain_start)) * domain_size).astype(np.int64)
