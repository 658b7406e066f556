"""`python -m engine bench`: train every model on the same scenarios, tabulate, write docs/benchmarks.md.

Rows are baselines, lmkg, its ablations (lmkg trained with one part switched off) and, on request, external peers
(RecBole models trained in their own venv on the same scenario's exported target-domain data, warm users only).
"""
from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from . import api

COLUMNS = [("warm", "ndcg@10"), ("warm", "hr@10"), ("warm", "mrr@10"),
           ("cold", "ndcg@10"), ("cold", "hr@10"), ("cold", "mrr@10"), ("all", "coverage@10")]
# Sanity the baselines must show on real data: (better model, worse model, segment) on ndcg@10.
SANITY = [("itemknn", "pop", "warm"), ("cmf", "pop", "warm"), ("emcdr", "pop", "cold")]
OURS = "lmkg"
# row name -> (model, settings)
ABLATIONS = {"lmkg -text": {"use_text": False}, "lmkg -kg": {"use_kg": False}, "lmkg -source": {"use_source": False},
             "lmkg -cf": {"use_cf": False}}
VARIANTS = {**{m: (m, {}) for m in api.MODELS}, **{k: (OURS, v) for k, v in ABLATIONS.items()}}
PEERS = {"recbole-sasrec": "sasrec", "recbole-lightgcn": "lightgcn"}
DEFAULT_ROWS = [*api.MODELS, *ABLATIONS]


def run(source: str, target: str, both: bool = False, models=None, seeds=(0,), out=None, workspace=None,
        progress_factory=None, reuse: bool = False, side_seeds=None) -> dict:
    """Train (or, with reuse, take the latest finished run with the same settings of) every row x direction x seed
    and tabulate. Ablations and peers run on `side_seeds` (default: the same seeds)."""
    directions = [(source, target)] + ([(target, source)] if both else [])
    unknown = [m for m in models or [] if m not in VARIANTS and m not in PEERS]
    if unknown:
        raise api.CrossLensError(f"unknown bench row(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join([*VARIANTS, *PEERS])}.")
    done = {}
    if reuse:
        for r in api.runs(workspace):
            if r["status"] == "done" and len(r["scenario"]["source"]) == 1:
                done[(r["scenario"]["source"][0], r["scenario"]["target"], r["model"], r["scenario"]["seed"],
                      _settings_key(r["config"]["params"]))] = r

    def obtain(src, tgt, name, seed) -> dict:
        model, settings = VARIANTS.get(name, (name, {}))
        key = (src, tgt, model, seed,
               None if name in PEERS else _settings_key(api.make_model(model, settings, seed).params))
        found = done.get(key) or next((r for k, r in done.items() if name in PEERS and k[:4] == key[:4]), None)
        if found:
            return found
        if settings and set(settings) <= set(api.MODELS[model].post_training):  # same network: no retraining
            record = api.derive(obtain(src, tgt, model, seed)["id"], settings, workspace=workspace)
        else:
            progress = progress_factory(f"{src}->{tgt} {name} seed {seed}") if progress_factory else None
            if name in PEERS:
                from . import peers
                record = peers.run_peer(src, tgt, PEERS[name], seed, workspace=workspace, progress=progress)
            else:
                record = api.train(src, tgt, model, seed=seed, settings=settings, workspace=workspace,
                                   progress=progress, maps=False)  # maps are not benchmarked; `map` adds them
            getattr(progress, "close", lambda: None)()
        done[key] = record
        return record

    rows = []
    for src, tgt in directions:
        for name in models or DEFAULT_ROWS:
            records = [obtain(src, tgt, name, seed) for seed in (seeds if name in api.MODELS else side_seeds or seeds)]
            rows.append(_row(src, tgt, name, records))
    markdown = render(rows, seeds, workspace)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(markdown)
        os.replace(tmp, path)
    return {"rows": rows, "markdown": markdown}


def _settings_key(params: dict) -> str:
    """A run's settings apart from its seed: a run is reused only if nothing else about the model changed."""
    return repr(sorted((k, v) for k, v in params.items() if k != "seed"))


def _row(src, tgt, model, records) -> dict:
    row = {"direction": f"{src} -> {tgt}", "model": model, "runs": [r["id"] for r in records],
           "seeds": [r["scenario"]["seed"] for r in records]}
    for seg, metric in COLUMNS:
        values = [r["metrics"][seg][metric] for r in records if metric in r["metrics"].get(seg, {})]
        row[f"{seg} {metric}"] = (float(np.mean(values)), float(np.std(values))) if values else None
    for key in ("train_seconds", "eval_seconds"):
        row[key] = float(np.mean([r[key] for r in records]))
    row["test cases"] = records[0]["metrics"]["all"]["cases"]
    return row


def render(rows: list[dict], seeds, workspace=None) -> str:
    header = ["direction", "model", "seeds", *[f"{s} {m}" for s, m in COLUMNS], "train s", "eval s"]
    lines = ["# Benchmarks", "",
             f"Generated by `python -m engine bench` on {time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"device {'cuda' if torch.cuda.is_available() else 'cpu'}; mean ± std over the seeds listed.",
             "",
             "Protocol: full ranking over every target-domain item, the user's known target items masked. Warm users: "
             "leave-last-out in the target (test = last). Cold users: 20% of the overlapping users, all their target "
             "interactions held out, scored from their source history alone. `eval s` = scoring and ranking every "
             "test case of the scenario plus all metrics, excluding training. `lmkg -x` = lmkg trained without x "
             "(text, knowledge graph, source-domain history, collaborative channel). `recbole-*` = RecBole 1.2.1 "
             "peers trained on the same scenario's target-domain training data; they cannot serve cold users (—) "
             "and their coverage is over warm users.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["direction"], r["model"], ",".join(map(str, r["seeds"]))]
        for s, m in COLUMNS:
            value = r[f"{s} {m}"]
            cells.append("—" if value is None else f"{value[0]:.4f}" + (f" ± {value[1]:.4f}" if len(r["seeds"]) > 1 else ""))
        cells += [f"{r['train_seconds']:.1f}", f"{r['eval_seconds']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    slowest = max(rows, key=lambda r: r["eval_seconds"])
    lines += ["", f"Slowest full-ranking evaluation of all {slowest['test cases']} test cases of a scenario: "
              f"{slowest['eval_seconds']:.2f} s ({slowest['model']}, {slowest['direction']}).", ""]
    lines += _against_best(rows, workspace)
    lines += ["", "Sanity checks (ndcg@10; p = paired Wilcoxon signed-rank test per seed, on the same test cases):",
              ""]
    for direction in dict.fromkeys(r["direction"] for r in rows):
        by_model = {r["model"]: r for r in rows if r["direction"] == direction}
        for better, worse, seg in SANITY:
            if better in by_model and worse in by_model:
                b, w = by_model[better][f"{seg} ndcg@10"][0], by_model[worse][f"{seg} ndcg@10"][0]
                lines.append(f"- {direction}: {better} {'>' if b > w else 'NOT >'} {worse} on {seg} users "
                             f"({b:.4f} vs {w:.4f}; p = {_p_values(by_model[better], by_model[worse], seg, workspace)})")
    return "\n".join(lines) + "\n"


def _against_best(rows: list[dict], workspace) -> list[str]:
    """lmkg against the best other model (baseline or peer) per direction and segment, on the seeds both have."""
    lines = []
    for direction in dict.fromkeys(r["direction"] for r in rows):
        here = [r for r in rows if r["direction"] == direction]
        ours = next((r for r in here if r["model"] == OURS), None)
        if ours is None:
            continue
        if not lines:
            lines = [f"{OURS} against the best other model (baseline or peer; ablations excluded) on ndcg@10, paired "
                     f"Wilcoxon signed-rank test per seed:", ""]
        for seg in ("warm", "cold"):
            others = [r for r in here if r["model"] != OURS and r["model"] not in ABLATIONS and r[f"{seg} ndcg@10"]]
            if not others:
                continue
            best = max(others, key=lambda r: r[f"{seg} ndcg@10"][0])
            a, b = ours[f"{seg} ndcg@10"][0], best[f"{seg} ndcg@10"][0]
            lines.append(f"- {direction}, {seg}: {OURS} {a:.4f} vs {best['model']} {b:.4f} = {a / b:.2f}x "
                         f"(p = {_p_values(ours, best, seg, workspace)})")
    return lines


def _p_values(a: dict, b: dict, seg: str, workspace) -> str:
    runs_b = dict(zip(b["seeds"], b["runs"]))
    p = [api.compare(x, runs_b[seed], workspace=workspace)["segments"][seg]["p_value"]
         for seed, x in zip(a["seeds"], a["runs"]) if seed in runs_b]
    return ", ".join(f"{v:.2g}" for v in p) or "no common seed"
