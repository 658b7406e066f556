"""Under torchrun (two gloo processes here) evaluation and a first-time text embedding are shared out among the
processes and give exactly what one process computes; rank 0 alone writes the text cache and stores the run."""
import json
import os
import shutil
import socket
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine import api, evaluate, text
from engine import scenario as scenarios
from engine.models import MODELS
from engine.request import scenario_spec
from engine.store import open_workspace
from tests.conftest import make_domains

WORLD = 2
BATCH = 8  # test cases per ranking batch: several batches for each process
TIMEOUT = 120  # seconds; a process stuck in a collective call fails the test instead of hanging it

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is unavailable", allow_module_level=True)


def fitted_itemknn(workspace):
    """src -> tgt of the workspace with itemknn fitted on it: trains in well under a second."""
    store = open_workspace(workspace)
    sc = scenarios.build(store, scenario_spec(store, ["src"], "tgt"))
    return sc, MODELS["itemknn"]().fit(sc)


def worker(rank, port, threads, workspace, cache, out):
    """One process of the launch, as torchrun starts it: joins the group, evaluates, embeds, trains a run."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(threads)  # the parent's: floating-point sums depend on the number of threads
    from engine.train import init_distributed
    assert init_distributed() == (rank, WORLD)
    sc, model = fitted_itemknn(workspace)
    ev = evaluate.evaluate(model, sc, batch_size=BATCH)
    writes, store = [], text.EmbeddingCache.store
    text.EmbeddingCache.store = lambda self, key, hashes, vectors: (writes.append(len(hashes)),
                                                                    store(self, key, hashes, vectors))
    vectors, stats = text.embed_items(sc.items, cache)
    record = api.train("src", "tgt", "itemknn", workspace=workspace, maps=False)
    ev.per_case.to_parquet(out / f"{rank}.parquet")  # plain files, exact: nothing here is unpickled
    np.savez(out / f"{rank}.npz", top=ev.top, vectors=vectors)
    (out / f"{rank}.json").write_text(json.dumps({"summary": ev.summary, "misses": stats["misses"], "writes": writes,
                                                  "record": record}))
    dist.destroy_process_group()


def launch(*args) -> None:
    """WORLD processes running worker(rank, *args), failed as soon as one fails or TIMEOUT passes."""
    context = mp.start_processes(worker, args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.time() + TIMEOUT
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} processes did not finish in {TIMEOUT} s")


def read_result(folder, rank: int) -> dict:
    arrays = np.load(folder / f"{rank}.npz")
    return {**json.loads((folder / f"{rank}.json").read_text()), "top": arrays["top"], "vectors": arrays["vectors"],
            "per_case": pd.read_parquet(folder / f"{rank}.parquet")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_evaluate_and_embed_exactly_like_one(tmp_path, ingested_workspace, monkeypatch):
    ws = ingested_workspace(tmp_path / "ws", make_domains(n_users=80, n_items=40, per_user=5, seed=1))
    sc, model = fitted_itemknn(ws)
    one = evaluate.evaluate(model, sc, batch_size=BATCH)
    assert len(sc.test) > WORLD * BATCH
    one_vectors, _ = text.embed_items(sc.items, tmp_path / "one_cache")
    one_run = api.train("src", "tgt", "itemknn", workspace=ws, maps=False)
    exported = tmp_path / "one_cache" / "models"  # the encoder's int8 export, unless this process had it loaded
    if exported.is_dir():  # the export is deterministic and takes ~20 s: the processes read this one
        shutil.copytree(exported, tmp_path / "two_cache" / "models")

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launch(free_port(), torch.get_num_threads(), ws, tmp_path / "two_cache", tmp_path)
    results = [read_result(tmp_path, rank) for rank in range(WORLD)]

    for got in results:  # every process returns the whole evaluation and every vector, one process's exactly
        pd.testing.assert_frame_equal(got["per_case"], one.per_case, check_exact=True)
        assert np.array_equal(got["top"], one.top)
        assert got["summary"] == one.summary
        assert got["vectors"].dtype == one_vectors.dtype and np.array_equal(got["vectors"], one_vectors)
        assert got["misses"] == len(set(text.item_texts(sc.items)))
    assert results[0]["misses"] > WORLD * 32  # several encoder batches (of 32 texts) for each process
    assert results[0]["writes"] == [results[0]["misses"]] and results[1]["writes"] == []  # rank 0 writes, once
    cached, _ = text.embed_items(sc.items, tmp_path / "two_cache")  # what a later run reads back
    assert np.array_equal(cached, one_vectors)

    two_run, helper = results[0]["record"], results[1]["record"]
    assert helper == {} and two_run["config"]["processes"] == WORLD  # rank 0 stores the run
    assert two_run["metrics"] == one_run["metrics"]
    assert len(api.runs(ws)) == 2
