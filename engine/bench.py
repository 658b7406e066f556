"""`python -m engine bench`: train every model on the same scenarios, tabulate, write docs/benchmarks.md.

Rows are baselines, lmkg, its ablations (lmkg trained with one part switched off) and, on request, external peers
(RecBole models trained in their own venv on the same scenario's exported target-domain data, warm users only).
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import evaluate, peers, runs
from .device import default_device
from .errors import CrossLensError
from .models import MODELS
from .request import TrainRequest, make_model
from .store import write_text

COLUMNS = [("warm", "ndcg@10"), ("warm", "hr@10"), ("warm", "mrr@10"),
           ("cold", "ndcg@10"), ("cold", "hr@10"), ("cold", "mrr@10"), ("all", "coverage@10")]
BUCKET_METRICS = ("ndcg@10", "hr@10")  # what the per-bucket tables show
BUCKET_TABLES = {"items": "item bucket", "activity": "user-activity bucket"}  # evaluate's segment group -> title
# Sanity the baselines must show on real data: (better model, worse model, segment) on ndcg@10.
SANITY = [("itemknn", "pop", "warm"), ("userknn", "pop", "cold"), ("cmf", "pop", "warm"), ("emcdr", "pop", "cold")]
OURS = "lmkg"
# row name -> (model, settings)
ABLATIONS = {"lmkg -text": {"use_text": False}, "lmkg -kg": {"use_kg": False}, "lmkg -source": {"use_source": False},
             "lmkg -cf": {"use_cf": False}}
VARIANTS = {**{m: (m, {}) for m in MODELS}, **{k: (OURS, v) for k, v in ABLATIONS.items()}}
PEERS = {"recbole-sasrec": "sasrec", "recbole-lightgcn": "lightgcn", "recbole-sasrec-mixed": "sasrec-mixed"}
DEFAULT_ROWS = [*MODELS, *ABLATIONS]


def bench_rows(models=None, peers=None) -> list[str]:
    """The rows a bench runs: `models` (default: every model and ablation), then the `peers` (`sasrec` or
    `recbole-sasrec`)."""
    rows = [*(models or DEFAULT_ROWS), *(f"recbole-{p.removeprefix('recbole-')}" for p in peers or [])]
    unknown = [m for m in rows if m not in VARIANTS and m not in PEERS]
    if unknown:
        raise CrossLensError(f"unknown bench row(s) {', '.join(unknown)}; choose from "
                             f"{', '.join([*VARIANTS, *PEERS])}.")
    return rows


def run(source: str, target: str, both: bool = False, models=None, seeds=(0,), out=None, workspace=None,
        progress_factory=None, reuse: bool = False, side_seeds=None, peer_seeds=None, peers=None) -> dict:
    """Train (or, with reuse, take the latest finished run with the same settings of) every row x direction x seed
    and tabulate. Ablations run on `side_seeds` (default: the same seeds), peers on `peer_seeds` (default: the
    ablations')."""
    directions = [(source, target)] + ([(target, source)] if both else [])
    names = bench_rows(models, peers)
    done = {}
    if reuse:
        for r in runs.runs(workspace):
            if r["status"] == "done" and len(r["scenario"]["source"]) == 1:
                done[(r["scenario"]["source"][0], r["scenario"]["target"], r["model"], r["scenario"]["seed"],
                      _settings_key(r["config"]["params"]))] = r

    def obtain(src, tgt, name, seed) -> dict:
        model, settings = VARIANTS.get(name, (name, {}))
        key = (src, tgt, model, seed,
               None if name in PEERS else _settings_key(make_model(model, settings, seed).params))
        found = done.get(key) or next((r for k, r in done.items() if name in PEERS and k[:4] == key[:4]), None)
        if found:
            return found
        if settings and set(settings) <= set(MODELS[model].post_training):  # same network: no retraining
            record = runs.derive(obtain(src, tgt, model, seed)["id"], settings, workspace=workspace)
        else:
            progress = progress_factory(f"{src}->{tgt} {name} seed {seed}") if progress_factory else None
            if name in PEERS:
                record = peers.run_peer(src, tgt, PEERS[name], seed, workspace=workspace, progress=progress)
            else:
                request = TrainRequest(src, tgt, model, seed, settings=settings, maps=False)  # `map` adds them
                record = runs.train(request, workspace, progress)
            getattr(progress, "close", lambda: None)()
        done[key] = record
        return record

    rows = []
    for src, tgt in directions:
        for name in names:
            records = [obtain(src, tgt, name, seed) for seed in row_seeds(name, seeds, side_seeds, peer_seeds)]
            rows.append(_row(src, tgt, name, records))
    markdown = render(rows, seeds, workspace)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(markdown, path)
    return {"rows": rows, "markdown": markdown}


def row_seeds(name: str, seeds, side_seeds=None, peer_seeds=None) -> list[int]:
    """The seeds a bench row runs on: a model its `seeds`, an ablation `side_seeds` (default: `seeds`), a peer
    `peer_seeds` (default: the ablations')."""
    if name in MODELS:
        return list(seeds)
    side = side_seeds or seeds
    return list(peer_seeds or side) if name in PEERS else list(side)


def _settings_key(params: dict) -> str:
    """A run's settings apart from its seed: a run is reused only if nothing else about the model changed."""
    return repr(sorted((k, v) for k, v in params.items() if k != "seed"))


def _row(src, tgt, model, records) -> dict:
    row = {"direction": f"{src} -> {tgt}", "model": model, "runs": [r["id"] for r in records],
           "seeds": [r["scenario"]["seed"] for r in records]}
    for seg, metric in COLUMNS:
        row[f"{seg} {metric}"] = _mean_std([r["metrics"].get(seg, {}).get(metric) for r in records])
    for key in ("train_seconds", "eval_seconds"):
        row[key] = float(np.mean([r[key] for r in records]))
    row["test cases"] = records[0]["metrics"]["all"]["cases"]
    # Every segment's cases and bucket metrics per seed: for the bucket tables and the paired comparisons.
    row["by seed"] = {r["scenario"]["seed"]: {seg: {k: values.get(k) for k in ("cases", *BUCKET_METRICS)}
                                              for seg, values in r["metrics"].items()} for r in records}
    return row


def _mean_std(values) -> tuple[float, float] | None:
    """(mean, std) of the values that are there; None if none is."""
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else None


def _per_seed(row: dict, seg: str, metric: str = "ndcg@10") -> dict:
    """{seed: the row's value of the metric on the segment}, for the seeds that have one (a segment without cases,
    or a run stored before buckets existed, has none)."""
    values = {seed: segments.get(seg, {}).get(metric) for seed, segments in row["by seed"].items()}
    return {seed: v for seed, v in values.items() if v is not None}


def _cell(value: tuple[float, float] | None, spread: bool) -> str:
    if value is None:
        return "—"
    return f"{value[0]:.4f}" + (f" ± {value[1]:.4f}" if spread else "")


def _by_direction(rows: list[dict]) -> dict[str, list[dict]]:
    return {d: [r for r in rows if r["direction"] == d] for d in dict.fromkeys(r["direction"] for r in rows)}


def render(rows: list[dict], seeds, workspace=None) -> str:
    header = ["direction", "model", "seeds", *[f"{s} {m}" for s, m in COLUMNS], "train s", "eval s"]
    lines = ["# Benchmarks", "",
             f"Generated by `python -m engine bench` on {time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"device {default_device()}; mean ± std over the seeds listed.",
             "",
             "Protocol: full ranking over every target-domain item, the user's known target items masked. Warm users: "
             "leave-last-out in the target (test = last). Cold users: 20% of the overlapping users, all their target "
             "interactions held out, scored from their source history alone. `eval s` = scoring and ranking every "
             "test case of the scenario plus all metrics, excluding training. `lmkg -x` = lmkg trained without x "
             "(text, knowledge graph, source-domain history, collaborative channel). `recbole-sasrec` and "
             "`recbole-lightgcn` = RecBole 1.2.1 peers trained to early stopping on the same scenario's target-domain "
             "training data; they cannot serve cold users (—) and their coverage is over warm users; "
             "`recbole-sasrec-mixed` = RecBole SASRec on the users' mixed-domain sequences, scored on target items, "
             "cold users included.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["direction"], r["model"], ",".join(map(str, r["seeds"]))]
        cells += [_cell(r[f"{s} {m}"], len(r["seeds"]) > 1) for s, m in COLUMNS]
        cells += [f"{r['train_seconds']:.1f}", f"{r['eval_seconds']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    slowest = max(rows, key=lambda r: r["eval_seconds"])
    lines += ["", f"Slowest full-ranking evaluation of all {slowest['test cases']} test cases of a scenario: "
              f"{slowest['eval_seconds']:.2f} s ({slowest['model']}, {slowest['direction']}).", ""]
    lines += _against_best(rows, ("warm", "cold"), workspace,
                           f"{OURS} against the best other model (baseline or peer; ablations excluded) on ndcg@10, "
                           f"both averaged over the seeds they share, paired Wilcoxon signed-rank test per seed:")
    lines += ["", "Sanity checks (ndcg@10; p = paired Wilcoxon signed-rank test per seed, on the same test cases):",
              ""]
    for direction, here in _by_direction(rows).items():
        by_model = {r["model"]: r for r in here}
        for better, worse, seg in SANITY:
            if better in by_model and worse in by_model:
                b, w = by_model[better][f"{seg} ndcg@10"][0], by_model[worse][f"{seg} ndcg@10"][0]
                lines.append(f"- {direction}: {better} {'>' if b > w else 'NOT >'} {worse} on {seg} users "
                             f"({b:.4f} vs {w:.4f}; p = {_p_values(by_model[better], by_model[worse], seg, workspace)})")
    lines += _bucket_tables(rows)
    items = evaluate.segment_groups(_segments(rows))["items"]
    per_bucket = _against_best(rows, items, workspace,
                               f"{OURS} against the best other model on each item bucket (baseline or peer; "
                               f"ablations excluded; the best chosen per bucket) on ndcg@10, both averaged over the "
                               f"seeds they share; paired Wilcoxon signed-rank test per seed, {len(items)} tests per "
                               f"direction and seed, not corrected for multiple testing:")
    if per_bucket:
        lines += ["", f"### Per bucket: {OURS} against the best other model", "", *per_bucket]
    lines += _ablation_lines(rows, workspace)
    return "\n".join(lines) + "\n"


# Where each part of lmkg should carry weight: ablation row -> the segments it is tested on.
ABLATION_SEGMENTS = {"lmkg -text": ("warm", "cold", evaluate.RARE), "lmkg -kg": ("warm", "cold", evaluate.RARE),
                     "lmkg -source": ("warm", "cold"), "lmkg -cf": ("warm", "cold", evaluate.RARE)}


def _ablation_lines(rows: list[dict], workspace) -> list[str]:
    """lmkg against each of its ablations on the segments where that part should matter (ndcg@10, shared seeds,
    paired test per seed): a part earns its place where lmkg is significantly better than lmkg without it."""
    lines = []
    for direction, here in _by_direction(rows).items():
        ours = next((r for r in here if r["model"] == OURS), None)
        for r in here:
            for seg in ABLATION_SEGMENTS.get(r["model"], ()) if ours else ():
                pair = _shared_means(ours, r, seg)
                if pair:
                    a, b, seeds, _ = pair
                    lines.append(f"- {direction}, {seg}: {OURS} {a:.4f} vs {r['model']} {b:.4f}{_ratio(a, b)} "
                                 f"(seeds {','.join(map(str, seeds))}; p = {_p_values(ours, r, seg, workspace, seeds)})")
    if not lines:
        return []
    return ["", f"### What each part of {OURS} adds", "",
            f"{OURS} against {OURS} trained without one part, on ndcg@10 (paired Wilcoxon signed-rank test per seed):",
            "", *lines]


def _segments(rows: list[dict]) -> list[str]:
    """Every segment some row's runs report, in evaluate's order."""
    return list(dict.fromkeys(seg for r in rows for segments in r["by seed"].values() for seg in segments))


def _bucket_tables(rows: list[dict]) -> list[str]:
    """Per direction, bucket group and metric (BUCKET_METRICS): one row per bench row, one column per bucket with its
    test cases per seed in the header; — where a row's runs have no value (no cases, or stored before buckets)."""
    ranges = ", ".join(f"{n} {r}" for n, r in zip(evaluate.ITEM_BUCKET_NAMES,
                                                  evaluate.bucket_ranges(evaluate.ITEM_BUCKETS)))
    lines = ["", "## Where each signal matters", "",
             f"Item buckets: warm test cases by their held-out item's number of target-domain training interactions "
             f"({ranges}; {evaluate.RARE} = both). User-activity buckets: test cases by the number of target-domain "
             f"items in their history (`{evaluate.activity_names()[0]}` = the cold users; peers cannot serve them). "
             f"n = the bucket's test cases on each seed, in seed order."]
    for direction, here in _by_direction(rows).items():
        groups = evaluate.segment_groups(_segments(here))
        for group, title in BUCKET_TABLES.items():
            if not groups[group]:
                continue  # no run of this direction has these buckets (all stored before buckets existed)
            header = ["model", "seeds", *[f"{seg} (n = {_cases(here, seg)})" for seg in groups[group]]]
            for metric in BUCKET_METRICS:
                lines += ["", f"### {direction}: {metric} per {title}", "",
                          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                for r in here:
                    cells = [_cell(_mean_std(_per_seed(r, seg, metric).values()), len(r["seeds"]) > 1)
                             for seg in groups[group]]
                    lines.append("| " + " | ".join([r["model"], ",".join(map(str, r["seeds"])), *cells]) + " |")
    return lines


def _cases(rows: list[dict], seg: str) -> str:
    """The segment's test cases on each seed (a scenario's, so any row that reports the segment on it tells)."""
    cases = {}
    for r in rows:
        for seed, segments in r["by seed"].items():
            if seg in segments:
                cases.setdefault(seed, segments[seg]["cases"])
    return ", ".join(str(cases[seed]) for seed in sorted(cases))


def _against_best(rows: list[dict], segments, workspace, title: str) -> list[str]:
    """lmkg against the best other model (baseline or peer; ablations excluded) per direction and segment: every
    rival and lmkg averaged over the seeds the two share (a peer may have fewer seeds), the best rival chosen on
    those means, with the paired test's p per shared seed."""
    lines = []
    for direction, here in _by_direction(rows).items():
        ours = next((r for r in here if r["model"] == OURS), None)
        if ours is None:
            continue
        for seg in segments:
            pairs = [p for p in (_shared_means(ours, r, seg) for r in here
                                 if r["model"] != OURS and r["model"] not in ABLATIONS) if p]
            if not pairs:
                continue
            a, b, seeds, best = max(pairs, key=lambda p: p[1])
            lines.append(f"- {direction}, {seg}: {OURS} {a:.4f} vs {best['model']} {b:.4f}{_ratio(a, b)} "
                         f"(seeds {','.join(map(str, seeds))}; p = {_p_values(ours, best, seg, workspace, seeds)})")
    return [title, "", *lines] if lines else []


def _shared_means(ours: dict, other: dict, seg: str):
    """(our mean, their mean, the seeds, their row) of ndcg@10 on the segment over the seeds both have; None if none."""
    a, b = _per_seed(ours, seg), _per_seed(other, seg)
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return None
    return float(np.mean([a[s] for s in seeds])), float(np.mean([b[s] for s in seeds])), seeds, other


def _ratio(a: float, b: float) -> str:
    return f" = {a / b:.2f}x" if b else " (no ratio: it scores 0)"


def _p_values(a: dict, b: dict, seg: str, workspace, seeds=None) -> str:
    """The paired test's p on the segment for each seed both rows have (or each of `seeds`); — for a seed where the
    segment has no cases."""
    runs_b = dict(zip(b["seeds"], b["runs"]))
    p = [runs.compare(x, runs_b[seed], workspace=workspace)["segments"].get(seg, {}).get("p_value")
         for seed, x in zip(a["seeds"], a["runs"]) if seed in runs_b and (seeds is None or seed in seeds)]
    return ", ".join("—" if v is None else f"{v:.2g}" for v in p) or "no common seed"
