"""`python -m engine scale`: how each stage's time and memory grow with the data size, on generated data.

Per factor f (a multiple of the shipped dataset's size, engine.generate), in a fresh workspace: ingest both domains,
split the arts -> office scenario, embed every item's text into the empty text cache, train lmkg one epoch on cached
text (the run's train_seconds), fit item-kNN's similarity with settings chosen on validation (lmkg's collaborative
channel), evaluate the run on every test case, explain one top recommendation (SHAP + LIME) on the loaded run, map
the run; and, when asked for by name (stage `training`), train lmkg to early stopping as a user does.

Each stage runs in a process of its own, forked from a multiprocessing "forkserver" that has only imported the engine
(so no stage inherits another's memory, and none pays the imports), which sets up what the stage needs (scenario
built, run loaded) unmeasured, resets the resident high-water mark (5 into /proc/self/clear_refs), runs the stage and
reads VmHWM: `peak MiB` is the most the process held meanwhile, libraries and set-up included, `+MiB` that peak above
its size when the stage began (without /proc: ru_maxrss). One-off costs stay out: the text encoder's int8 export is
made once and copied into each workspace, the encoder is loaded before the embedding is timed, and UMAP's numba
compilation is paid by a first maps call in the same process (reported) before the timed one. The growth exponent
between factors f1 < f2 is log(v2 / v1) / log(f2 / f1): 1 linear, 2 quadratic, near 0 a fixed cost.
"""
from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from . import data as datasets, evaluate, generate, runs, scenario as scenarios, text
from .device import default_device
from .errors import CrossLensError
from .models import itemknn
from .request import TrainRequest, make_model, scenario_spec
from .store import TEXT_CACHE, open_workspace, write_text

DOMAINS, SOURCE, TARGET, MODELS_DIR = ("arts", "office"), ["arts"], "office", "encoder-models"
STAGES = {"ingest": "ingest both domains", "scenario": "scenario split", "text": "first-time text embedding",
          "train": "lmkg, one epoch (train_seconds)", "similarity": "item-kNN similarity fit",
          "evaluate": "full-ranking evaluation", "explain": "SHAP + LIME, one recommendation",
          "maps": "embedding maps (warm)", "training": "lmkg, full training to early stopping (train_seconds)"}
DEFAULT_STAGES = tuple(s for s in STAGES if s != "training")  # a full training only when asked (an hour at 16x)
NEEDS = {"evaluate": "train", "explain": "train", "maps": "train"}  # and every stage needs ingest
FIGURES = ("seconds", "peak_mib", "stage_mib")


def check_arguments(factors, out, workdir, seed, stages, settings) -> tuple[list[float], list[str]]:
    """(factors, ascending; the stages to run, with those they need) or a CrossLensError saying what to fix."""
    problems, least = [], 2 * generate.ITEMS_PER_TOPIC / min(v["items"] for v in generate.SHIPPED.values())
    try:
        factors = [float(f) for f in (factors.split(",") if isinstance(factors, str) else factors)]
    except (TypeError, ValueError):
        problems.append(f"--factors must be numbers separated by commas, like 1,4,16, not {factors!r}")
        factors = []
    if factors and not all(math.isfinite(f) and f >= least for f in factors):
        problems.append(f"every factor must be a number of at least {math.ceil(least * 1e4) / 1e4:g} (1 = the "
                        f"shipped dataset's size; smaller ones generate too few items), not "
                        f"{','.join(f'{f:g}' for f in factors)}")
    if not problems and (len(set(factors)) < 2 or len(set(factors)) < len(factors)):
        problems.append("--factors needs at least two different factors, each once (growth is measured between them)")
    if out is not None and (Path(out).is_dir() or not Path(out).resolve().parent.is_dir()):
        problems.append(f"--out {out} must be a file in an existing folder, not a folder or in a missing one")
    if workdir is not None and Path(workdir).exists() and (not Path(workdir).is_dir() or any(
            (Path(workdir) / name).exists() for name in [MODELS_DIR, *map(repr, factors)])):
        problems.append(f"--workdir {workdir} must be a folder without this run's subfolders (one per factor)")
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"--seed must be a whole number of at least 0, not {seed!r}")
    if not set(stages) <= set(STAGES):
        problems.append(f"unknown stage(s) {', '.join(sorted(set(stages) - set(STAGES)))}; choose from "
                        f"{', '.join(STAGES)}")
    if problems:
        raise CrossLensError("cannot measure scaling: " + "; ".join(problems) + ".")
    make_model("lmkg", {**settings, "epochs": 1})  # a bad lmkg setting is refused here, before anything runs
    wanted = {"ingest", *stages, *(NEEDS[s] for s in stages if s in NEEDS)}
    return sorted(factors), [s for s in STAGES if s in wanted]


def run(factors, out=None, workdir=None, seed: int = 0, keep: bool = False, stages=DEFAULT_STAGES,
        settings: dict | None = None, progress=None) -> dict:
    """Measure the stages at every factor; returns {"rows", "sizes", "exponents", "markdown", ...}, the markdown
    also written to `out`. `settings` (lmkg's, e.g. a small dim for tests) and `stages` choose what is measured."""
    settings = dict(settings or {})
    factors, stages = check_arguments(factors, out, workdir, seed, stages, settings)
    made = workdir is None or not Path(workdir).exists()
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="crosslens-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    job = {"seed": seed, "settings": settings, "encoder": settings.get("encoder", text.DEFAULT_ENCODER),
           "models": str(root / MODELS_DIR)}
    began, rows, sizes, steps = time.perf_counter(), [], {}, len(factors) * (len(stages) + 1)
    try:
        once = _in_child("encoder", job) if {"text", "train", "training"} & set(stages) else None
        for k, f in enumerate(factors):
            job.update(factor=f, folder=str(root / repr(f)))
            for i, stage in enumerate(["generate", *stages]):
                if progress:
                    progress({"stage": stage, "factor": f"{f:g} ({k + 1} of {len(factors)})",
                              "elapsed": f"{time.perf_counter() - began:.0f} s"}, (k * (len(stages) + 1) + i) / steps)
                result = _in_child(stage, job)
                if stage == "generate":
                    sizes[f] = result
                    continue
                rows.append({"stage": stage, "factor": f, **result})
                job.update({key: result[key] for key in ("run_id", "user", "item") if key in result})
                if stage == "ingest" and Path(job["models"]).is_dir():  # the encoder's export, made once
                    shutil.copytree(job["models"], Path(job["folder"], "workspace", TEXT_CACHE, "models"))
    finally:
        if not keep:
            for name in [MODELS_DIR, *map(repr, factors)]:
                shutil.rmtree(root / name, ignore_errors=True)
            if made:
                shutil.rmtree(root, ignore_errors=True)
    growth = lambda a, b, m: (math.log(b[m] / a[m]) / math.log(b["factor"] / a["factor"])
                              if a[m] > 0 and b[m] > 0 else None)
    exponents = [{"stage": s, "from": a["factor"], "to": b["factor"], **{m: growth(a, b, m) for m in FIGURES}}
                 for s in stages for a, b in itertools.pairwise([r for r in rows if r["stage"] == s])]
    markdown = render(factors, stages, rows, sizes, exponents, once, seed, settings)
    if out:
        write_text(markdown, Path(out))
    return {"rows": rows, "sizes": sizes, "exponents": exponents, "encoder": once, "markdown": markdown,
            "workdir": str(root) if keep else None}


def render(factors, stages, rows, sizes, exponents, once, seed, settings) -> str:
    import torch
    cell = {(r["stage"], r["factor"]): r for r in rows}
    fmt = lambda v, form="{:.2f}": "—" if v is None else form.format(v)
    table = lambda head, body: ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                                *("| " + " | ".join(map(str, r)) + " |" for r in body)]
    lines = ["# Scale", "", f"Generated by `python -m engine scale --factors {','.join(f'{f:g}' for f in factors)}` "
             f"on {time.strftime('%Y-%m-%d')}; {platform.machine()}, {platform.system()} {platform.release()}, "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} thread(s)), device "
             f"{default_device()}; seed {seed}" + (f"; lmkg settings {settings}" if settings else "") + ".", "",
             "Each stage ran in a fresh process, set up outside the measurement (engine/scale.py says how). `peak "
             "MiB (+MiB)`: the process's resident high-water mark during the stage (and how far above its size when "
             "the stage began). Exponents: log(v2/v1) / log(f2/f1) between consecutive factors; 1 = linear.", "",
             *table(["factor", "users", "items", "interactions", "generate s", "generate peak MiB"],
                    [[f"{f:g}", s["users"], s["items"], s["interactions"], fmt(s["seconds"]),
                      fmt(s["peak_mib"], "{:.0f}")] for f, s in sizes.items()]), "",
             *table(["stage", *(f"{f:g}: {u}" for f in factors for u in ("s", "peak MiB (+MiB)"))],
                    [[STAGES[s], *(v for f in factors for v in (fmt(cell[s, f]["seconds"]), "{:.0f} (+{:.0f})"
                                   .format(cell[s, f]["peak_mib"], cell[s, f]["stage_mib"])))] for s in stages]), "",
             *table(["exponent", *(f"{a:g}→{b:g}: {u}" for a, b in itertools.pairwise(factors)
                                   for u in ("s", "peak MiB", "+MiB"))],
                    [[STAGES[s], *(fmt(e[m]) for e in exponents if e["stage"] == s for m in FIGURES)]
                     for s in stages]), ""]
    if once:
        lines.append(f"- text encoder load and int8 export, once, copied into each workspace: {once['seconds']:.1f} s")
    for key, what, form in (("texts_per_second", "first-time text embedding, texts per second", "{:.0f}"),
                            ("encoder_load_seconds", "text encoder load before it (its process's first)", "{:.1f}"),
                            ("wall_seconds", "lmkg run wall seconds (scenario, fit, evaluation, storing)", "{:.1f}"),
                            ("epochs_trained", "full training: epochs trained (validated in parts: fractions)", "{:g}"),
                            ("validations", "full training: validations (early stopping's unit)", "{:d}"),
                            ("load_seconds", "loading the run before the explanation (the dashboard: once per run)",
                             "{:.1f}"),
                            ("first_call_seconds", "maps, first call in its process (numba compiles UMAP)", "{:.1f}")):
        found = [f"{r['factor']:g}: {form.format(r[key])}" for r in rows if key in r]
        lines += [f"- {what}: " + ", ".join(found)] if found else []
    return "\n".join(lines) + "\n"


# ---- each stage in a process of its own ----------------------------------------------------------------------------
def _in_child(stage: str, job: dict) -> dict:
    """Run one stage in a fresh process: its figures, or the error it raised raised here."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # the server imports the engine once; every stage forks from it
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, stage, job))
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        process.join()
        result = {"error": f"its process ended without a result (exit code {process.exitcode}; out of memory?)"}
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()
    if "error" in result:
        raise (CrossLensError if result.get("usage") else RuntimeError)(f"scale stage {stage} at factor "
                                                                    f"{job.get('factor', '-')}: {result['error']}")
    return result


def _child(send, stage: str, job: dict) -> None:
    measure = Measure()
    try:
        extra = globals()[f"_{stage}"](job, measure) or {}
        send.send({"seconds": measure.seconds, "peak_mib": measure.peak,
                   "stage_mib": max(measure.peak - measure.start, 0.0), **extra})
    except BaseException as err:  # noqa: BLE001  (reported to the parent, which raises it)
        send.send({"error": f"{type(err).__name__}: {err}", "usage": isinstance(err, CrossLensError)})
    send.close()


class Measure:
    """measure(fn, *args) runs fn, timing it and reading the process's peak resident memory (MiB) while it ran."""

    def __call__(self, fn, *args, **kwargs):
        gc.collect()
        self.start = _status("VmRSS") or 0.0
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current resident size
        except OSError:
            pass
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds = time.perf_counter() - began
        self.peak = _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB (Linux)
        return result


def _status(key: str) -> float | None:
    try:
        return int(next(ln for ln in Path("/proc/self/status").read_text().splitlines()
                        if ln.startswith(key + ":")).split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def _workspace(job):
    return open_workspace(Path(job["folder"]) / "workspace")


def _built(job):
    store = _workspace(job)
    return scenarios.build(store, scenario_spec(store, SOURCE, TARGET, job["seed"]))


def _encoder(job, measure):
    measure(text.get_encoder, job["encoder"], artifact_dir=job["models"])


def _generate(job, measure):
    data = Path(job["folder"]) / "data"
    summary = measure(generate.generate, job["factor"], data, job["seed"], DOMAINS)
    users = pd.concat([pd.read_parquet(data / f"{d}.parquet", columns=["user_id"]) for d in DOMAINS])["user_id"]
    return {"users": users.nunique(), **{k: sum(v[k] for v in summary["domains"].values())
                                         for k in ("items", "interactions")}}


def _ingest(job, measure):
    store, folder = _workspace(job), Path(job["folder"]) / "data"
    measure(lambda: [datasets.ingest(store, d, folder / f"{d}.parquet", folder / f"{d}_items.parquet")
                     for d in DOMAINS])


def _scenario(job, measure):
    store = _workspace(job)
    sc = measure(scenarios.build, store, scenario_spec(store, SOURCE, TARGET, job["seed"]))
    return {"test_cases": len(sc.test), "train_interactions": len(sc.train)}


def _text(job, measure):
    sc, started = _built(job), time.perf_counter()
    text.get_encoder(job["encoder"], artifact_dir=sc.text_cache / "models")  # loaded once a process, as embedding does
    load = time.perf_counter() - started
    measure(sc.item_text_vectors, job["encoder"])
    return {"texts_per_second": sc.n_items / measure.seconds, "encoder_load_seconds": load}


def _train(job, measure):
    store = _workspace(job)
    request = TrainRequest(SOURCE, TARGET, "lmkg", job["seed"], epochs=1, settings=job["settings"], maps=False)
    record = measure(runs.train, request, store)  # what api.train does
    users = runs.test_users(record["id"], "warm", store) or runs.test_users(record["id"], None, store)
    top = runs.LoadedRun(record["id"], store).recommend(users[0], 1)["recommendations"][0]["item_id"]
    return {"seconds": record["train_seconds"], "wall_seconds": measure.seconds, "run_id": record["id"],
            "user": users[0], "item": top}


def _training(job, measure):
    """lmkg trained as a user trains it (its default epochs and early stopping) on the cached text."""
    store = _workspace(job)
    request = TrainRequest(SOURCE, TARGET, "lmkg", job["seed"], settings=job["settings"], maps=False)
    record = measure(runs.train, request, store)
    curve = runs.run_curves(record["id"], store)
    return {"seconds": record["train_seconds"], "wall_seconds": measure.seconds, "validations": len(curve),
            "epochs_trained": float(curve["epoch"].max())}


def _similarity(job, measure):
    return {"chosen": measure(itemknn.choose_similarity, _built(job))[1]}


def _evaluate(job, measure):
    _, sc, model = runs.load(job["run_id"], _workspace(job))
    measure(evaluate.evaluate, model, sc)


def _explain(job, measure):
    """The explanation as the dashboard gives it, on a run loaded once (its cached LoadedRun); the load timed apart."""
    from . import explain  # shap's import takes seconds: outside the measurement
    started = time.perf_counter()
    loaded = runs.LoadedRun(job["run_id"], _workspace(job))
    load = time.perf_counter() - started
    measure(loaded.explain, job["user"], job["item"], "both", nsamples=explain.SHAP_SAMPLES,
            lime_samples=explain.LIME_SAMPLES, seed=job["seed"])
    return {"load_seconds": load}


def _maps(job, measure):
    started = time.perf_counter()
    runs.compute_maps(job["run_id"], _workspace(job))
    first = time.perf_counter() - started
    measure(runs.compute_maps, job["run_id"], _workspace(job))
    return {"first_call_seconds": first}
