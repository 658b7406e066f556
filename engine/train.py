"""The training loop shared by torch models: mini-batches, Adam, early stopping on validation NDCG@10, progress.

A model hands in a module with `calculate_loss(*batch)` and a function that yields an epoch's batches; the loop
keeps the best state seen on validation and restores it at the end.

Under `torchrun` (torch.distributed initialised) every process builds the same batches from the same seed and
takes every world_size-th one; DistributedDataParallel averages the gradients, so N processes train like one
with an N times larger batch. Every rank validates on the same weights and so stops at the same epoch. On CUDA
the forward pass runs under bf16 autocast.
"""
from __future__ import annotations

import copy
import math
import os
import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .evaluate import validation_ndcg

PROGRESS_EVERY = 0.5  # seconds between progress reports inside an epoch (each epoch's end is always reported)


def fit_module(module: torch.nn.Module, epoch_batches: Callable[[np.random.Generator], Iterable[tuple]],
               recommender, scenario, params: dict, progress=None, stage: str = "train",
               valid_segment: str = "all", optimiser=None) -> dict:
    """Train `module` in place; returns the history of (epoch, loss, valid ndcg@10), one row per validation.

    Validation (and early stopping's patience) comes once an epoch, or with params["valid_every"] set, after every
    equal part of an epoch of at most that many steps: on a large catalogue an epoch is long, and patience counted in
    whole epochs would spend several of them confirming a peak that came early."""
    rng = np.random.default_rng(params["seed"])
    optimiser = optimiser or torch.optim.Adam(module.parameters(), lr=params["lr"])
    rank, world = init_distributed()
    step = Loss(module)
    if world > 1:
        step = DistributedDataParallel(step, find_unused_parameters=True)  # e.g. a batch without source pairs
    device_type = next(module.parameters()).device.type
    best, best_state, since_best, history = -math.inf, None, 0, []
    epochs, reported = params["epochs"], 0.0
    for epoch, done, batches, lo, hi in _parts(epoch_batches, rng, params, rank, world):
        started, total = time.time(), 0.0
        module.train()
        for i in range(lo, hi):
            if progress and time.time() - reported >= PROGRESS_EVERY:
                reported = time.time()
                progress({"stage": stage, "epoch_of": f"{epoch} of {epochs}"}, (epoch - 1 + i / len(batches)) / epochs)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=device_type == "cuda"):
                loss = step(*batches[i])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
        module.eval()
        ndcg = validation_ndcg(recommender, scenario, valid_segment)
        history.append({"stage": stage, "epoch": done, "epochs": epochs, "loss": total / max(hi - lo, 1),
                        "valid_ndcg@10": ndcg, "seconds": time.time() - started})
        if progress:
            progress(history[-1], done / epochs)
        if ndcg > best:
            best, best_state, since_best = ndcg, copy.deepcopy(module.state_dict()), 0
        else:
            since_best += 1
        if since_best >= params["patience"]:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    return {"best_valid_ndcg@10": best, "epochs": history}


def _parts(epoch_batches, rng, params: dict, rank: int, world: int):
    """The stretches of training between two validations: (epoch, the epochs done at its end, the epoch's batches,
    the stretch's first and end batch). An epoch's batches are drawn whole (every rank draws them all and takes its
    share), then cut into equal parts of at most params["valid_every"] steps: one part without it."""
    for epoch in range(1, params["epochs"] + 1):
        batches = list(epoch_batches(rng))
        if world > 1:  # every rank takes its share of the same batches, all ranks the same number of steps
            batches = batches[rank: len(batches) - len(batches) % world: world]
        parts = max(1, math.ceil(len(batches) / params["valid_every"])) if params.get("valid_every") else 1
        for part in range(parts):
            lo, hi = (round(len(batches) * p / parts) for p in (part, part + 1))
            yield epoch, epoch if parts == 1 else round(epoch - 1 + (part + 1) / parts, 3), batches, lo, hi


def _group_backend() -> str | None:
    """The process group's backend when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, else gloo; else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns (rank, world size)."""
    backend = _group_backend()
    if backend and not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def sparse_tables_allowed() -> bool:
    """Whether embedding tables may give sparse gradients: not under NCCL (torchrun on GPUs), which all-reduces
    dense tensors only; gloo, the CPU backend, takes sparse ones."""
    return _group_backend() != "nccl"


class AdamWithSparseTables:
    """AdamW for the dense parameters and lazy Adam (torch's SparseAdam: only the rows a step touched) for the
    embedding tables made with sparse=True. Dense AdamW rewrites every row of every table at every step: with
    614k items that was 0.25 s a step, most of a training epoch, and training grew with items x interactions."""

    def __init__(self, module: torch.nn.Module, lr: float, weight_decay: float = 0.0):
        tables = [m.weight for m in module.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
        kept = {id(t) for t in tables}
        dense = [p for p in module.parameters() if id(p) not in kept]
        self.optimisers = [torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay)]
        if tables:
            self.optimisers.append(torch.optim.SparseAdam(tables, lr=lr))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimiser in self.optimisers:
            optimiser.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimiser in self.optimisers:
            optimiser.step()


class Loss(torch.nn.Module):
    """A module's calculate_loss as its forward pass, which is what DistributedDataParallel hooks into."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *batch):
        return self.module.calculate_loss(*batch)


def shuffled_batches(rng: np.random.Generator, n: int, batch_size: int):
    """Index arrays covering range(n) in a random order."""
    order = rng.permutation(n)
    for lo in range(0, n, batch_size):
        yield order[lo:lo + batch_size]


def sample_negatives(rng: np.random.Generator, domain_start: np.ndarray, domain_size: np.ndarray) -> np.ndarray:
    """One random item per row from the row's own domain block [start, start + size)."""
    return domain_start + (rng.random(len(domain_start)) * domain_size).astype(np.int64)
