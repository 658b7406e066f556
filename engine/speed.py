"""`python -m engine speed`: the lmkg timings the product promises, measured on this machine and printed.

- first-time text embedding: every item text of the scenario into an empty cache (encoder load and its int8
  export included), then the same texts read back from that cache;
- lmkg training with cached text (fit only, early stopping as configured);
- scoring every test case (forward pass, masking of known items, top 20) and the full evaluation with all metrics;
- the process's peak resident memory.
Nothing is stored in the workspace registry.
"""
from __future__ import annotations

import resource
import tempfile
import time

from . import evaluate, scenario as scenarios, text
from .device import default_device
from .request import TrainRequest
from .store import open_workspace


def run(source: str, target: str, seed: int = 0, workspace=None, progress=None) -> dict:
    store = open_workspace(workspace)
    spec, model = TrainRequest(source, target, "lmkg", seed).check(store)
    sc = scenarios.build(store, spec)
    figures = {"device": default_device(), "items": sc.n_items, "test cases": len(sc.test)}
    with tempfile.TemporaryDirectory() as empty:
        started = time.perf_counter()
        _, stats = text.embed_items(sc.items, empty)
        figures["first-time text embedding s"] = time.perf_counter() - started
        figures["distinct texts"] = stats["misses"]
        started = time.perf_counter()
        text.embed_items(sc.items, empty)
        figures["cached text read s"] = time.perf_counter() - started
    text.embed_items(sc.items, sc.text_cache)  # the workspace cache warm, as every later run finds it
    started = time.perf_counter()
    model.fit(sc, progress=progress)
    figures["lmkg train s"] = time.perf_counter() - started
    figures["validations"] = len(model.log_["epochs"])
    started = time.perf_counter()
    evaluate.rank(model, sc, sc.test)
    figures["score all test cases s"] = time.perf_counter() - started
    started = time.perf_counter()
    ev = evaluate.evaluate(model, sc, "test")
    figures["full evaluation s"] = time.perf_counter() - started
    figures["warm ndcg@10"], figures["cold ndcg@10"] = ev.summary["warm"]["ndcg@10"], ev.summary["cold"]["ndcg@10"]
    figures["peak memory MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if figures["device"] == "cuda":
        import torch
        figures["peak GPU memory MiB"] = torch.cuda.max_memory_allocated() / 2**20
    return figures
