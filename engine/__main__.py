"""CLI: parse arguments, call engine.api, print a table or JSON. Bad input -> one paragraph on stderr, exit 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import api, evaluate, jobs, runs, tune
from .errors import CrossLensError
from .models import MODELS
from .request import TrainRequest

HEADLINE = ("ndcg@10", "hr@10", "mrr@10", "coverage@10")
BUCKET_TABLES = {  # segment group -> what its buckets are, above its table in `show`
    "items": "per item bucket, by the held-out item's target-domain training interactions ("
             + ", ".join(f"{n} {r}" for n, r in zip(evaluate.ITEM_BUCKET_NAMES,
                                                    evaluate.bucket_ranges(evaluate.ITEM_BUCKETS)))
             + f"; {evaluate.RARE} = both), warm cases:",
    "activity": "per user activity, by the number of target-domain items in the case's history:"}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    jobs.interrupt_on_sigterm()
    try:
        args.workspace = api.open_workspace(args.workspace)  # opened once, passed down
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not as a message at exit
        return code
    except (ValueError, KeyError, FileNotFoundError) as err:  # DatasetError and CrossLensError are ValueErrors
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`... | head`): say nothing more (Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # noqa: BLE001  (a fault of ours: one paragraph here, the traceback in a log file)
        log = fault_log(args.workspace)
        print(f"error: {type(err).__name__}: {err}. This is a fault in CrossLens, not in your input; the details "
              f"are in {log}.", file=sys.stderr)
        return 1


def fault_log(workspace) -> Path:
    """Write the current exception's traceback into the workspace's logs/ (the temp folder if that fails)."""
    name = f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (Path(getattr(workspace, "root", None) or api.workspace_folder(workspace)) / "logs",
                   Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"python -m engine {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
            return folder / name
        except OSError:
            continue
    return Path(name)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", help="workspace folder (default ./workspace or $CROSSLENS_WORKSPACE)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p = argparse.ArgumentParser(prog="python -m engine", description="CrossLens cross-domain recommendation engine")
    sub = p.add_subparsers(required=True, metavar="COMMAND", dest="command")

    s = sub.add_parser("ingest", parents=[common], help="validate and store a domain dataset")
    s.add_argument("--domain", required=True)
    s.add_argument("--interactions", required=True)
    s.add_argument("--items")
    s.add_argument("--kg")
    s.add_argument("--replace", action="store_true",
                   help="store over an existing domain of this name (runs trained on the old version keep it)")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("generate", parents=[common], help="write a seeded synthetic two-domain dataset in the upload "
                                                          "format, a multiple of the shipped one's size")
    s.add_argument("--scale", type=float, required=True, help="users, items and interactions as a multiple of the "
                                                              "shipped dataset's (1: about 208k interactions)")
    s.add_argument("--out", required=True, help="folder to write {domain}.parquet and {domain}_items.parquet into")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--domains", default="arts,office", help="the two domains' names, comma-separated (default "
                                                            "arts,office: the first is shaped like arts)")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("datasets", parents=[common], help="list datasets")
    s.set_defaults(func=cmd_datasets)

    s = sub.add_parser("train", parents=[common], help="train and evaluate a model on a scenario")
    s.add_argument("--source", help="source domain(s), comma-separated (required)")
    s.add_argument("--target", help="(required)")
    s.add_argument("--model", choices=list(MODELS), help="(required)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cold-fraction", type=float, default=0.2)
    s.add_argument("--epochs", type=int)
    s.add_argument("--sampled", type=int, metavar="N", help="rank against N random negatives instead of all items")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model setting, e.g. --set dim=32")
    s.add_argument("--no-maps", action="store_true", help="skip the embedding maps (`map RUN_ID` adds them later)")
    s.add_argument("--background", action="store_true", help="run as a background job; print its id and return")
    s.add_argument("--job", help=argparse.SUPPRESS)  # set by engine.jobs: the request is the job's
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("derive", parents=[common], help="a new run from a trained run's weights with settings that act "
                                                       "after training changed (lmkg: use_cf, new_items), evaluated "
                                                       "on the same test cases; no retraining")
    s.add_argument("run", help="the trained run's id")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", required=True,
                   help="a setting to change, e.g. --set new_items=2")
    s.add_argument("--background", action="store_true", help="run as a background job; print its id and return")
    s.add_argument("--job", help=argparse.SUPPRESS)  # set by engine.jobs in the job's own process
    s.set_defaults(func=cmd_derive)

    s = sub.add_parser("tune", parents=[common], help="choose a model's settings on validation (Optuna), then "
                                                     "evaluate the best once on test")
    s.add_argument("--source", help="source domain(s), comma-separated (required)")
    s.add_argument("--target", help="(required)")
    s.add_argument("--model", choices=[m for m, c in MODELS.items() if c.search], help="(required)")
    s.add_argument("--trials", type=int, default=20, help="at most this many trials (default 20)")
    s.add_argument("--budget", type=float, metavar="MINUTES", help="start no trial after this many minutes")
    s.add_argument("--segment", choices=tune.SEGMENTS, default="all",
                   help="the validation users whose NDCG@10 is maximised (default all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cold-fraction", type=float, default=0.2)
    s.add_argument("--epochs", type=int)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting kept fixed, not tuned")
    s.add_argument("--background", action="store_true", help="run as a background job; print its id and return")
    s.add_argument("--job", help=argparse.SUPPRESS)  # set by engine.jobs: the request is the job's
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("studies", parents=[common], help="list tuning studies, or one study's trials")
    s.add_argument("study_id", nargs="?")
    s.set_defaults(func=cmd_studies)

    s = sub.add_parser("delete-run", parents=[common], help="remove a finished, failed or cancelled run and its files")
    s.add_argument("run_id")
    s.set_defaults(func=cmd_delete_run)

    s = sub.add_parser("label", parents=[common], help="name, tag or note a run")
    s.add_argument("run_id")
    s.add_argument("--name", help="one line, at most 80 characters ('' clears it)")
    s.add_argument("--tag", action="append", default=[], help="add a tag (repeat for more)")
    s.add_argument("--untag", action="append", default=[], help="remove a tag")
    s.add_argument("--note", help="free text, at most 2000 characters ('' clears it)")
    s.set_defaults(func=cmd_label)

    s = sub.add_parser("jobs", parents=[common], help="list background jobs with their progress")
    s.set_defaults(func=cmd_jobs)

    s = sub.add_parser("cancel", parents=[common], help="cancel a background job")
    s.add_argument("job_id")
    s.set_defaults(func=cmd_cancel)

    s = sub.add_parser("runs", parents=[common], help="list runs")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("show", parents=[common], help="one run with all its metrics")
    s.add_argument("run_id")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("recommend", parents=[common], help="top-k target items for a user, for every user, or for "
                                                           "users in a file of histories")
    s.add_argument("run_id")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one user of the run's scenario (shown as a table)")
    who.add_argument("--all", action="store_true", help="every user of the scenario, each from their whole history "
                                                        "there (training and held-out interactions), into --out")
    who.add_argument("--histories", metavar="FILE", help="users from a file of user_id, item_id[, timestamp]"
                     "[, domain] rows in the run's domains, each scored from the file alone, into --out")
    s.add_argument("--out", metavar="FILE", help="the .csv or .parquet file to write (with --all or --histories)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--reasons", action="store_true", help="add each recommendation's top reason: the history item "
                                                          "whose removal lowers its score most")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser("compare", parents=[common], help="paired significance test of two runs")
    s.add_argument("run_a")
    s.add_argument("run_b")
    s.add_argument("--metric", default="ndcg@10")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("export", parents=[common], help="write a run's scenario for an external library")
    s.add_argument("run_id")
    s.add_argument("--format", default="recbole", help="recbole (atomic files of the target domain, warm cases)")
    s.add_argument("--out", required=True, help="folder to write into")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("peer", parents=[common], help="train a RecBole peer on a scenario and store it as a run")
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--model", required=True, choices=["sasrec", "lightgcn", "sasrec-mixed"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a RecBole setting, e.g. --set time_budget=3600 (seconds) --set threads=1")
    s.add_argument("--background", action="store_true", help="run as a background job; print its id and return")
    s.add_argument("--job", help=argparse.SUPPRESS)  # set by engine.jobs in the job's own process
    s.set_defaults(func=cmd_peer)

    s = sub.add_parser("setup", parents=[common], help="ingest the shipped dataset and train the default runs")
    s.add_argument("--background", action="store_true", help="train the default runs as background jobs")
    s.set_defaults(func=cmd_setup)

    s = sub.add_parser("bench", parents=[common], help="train and evaluate models, write docs/benchmarks.md")
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--both", action="store_true", help="also run the reverse direction")
    s.add_argument("--models", help="comma-separated rows: models, ablations ('lmkg -text', 'lmkg -kg', "
                                    "'lmkg -source', 'lmkg -cf'), peers (recbole-sasrec, recbole-lightgcn, "
                                    "recbole-sasrec-mixed); default: every model and ablation")
    s.add_argument("--seeds", default="0", help="comma-separated seeds")
    s.add_argument("--ablation-seeds", help="seeds for ablations (default: --seeds)")
    s.add_argument("--peers", help="comma-separated peers added after the rows: sasrec, lightgcn, sasrec-mixed "
                                   "(RecBole 1.2.1, `make peers-venv`)")
    s.add_argument("--peer-seeds", help="seeds for peers, about an hour each (default: --ablation-seeds)")
    s.add_argument("--out", default="docs/benchmarks.md")
    s.add_argument("--reuse", action="store_true", help="tabulate existing finished runs instead of retraining them")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("speed", parents=[common], help="measure lmkg's text embedding, training and scoring times")
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu or cuda (default: the GPU when there is one, else the CPU)")
    s.set_defaults(func=cmd_speed)

    s = sub.add_parser("scale", parents=[common], help="how each stage's seconds and peak memory grow with the data "
                                                      "size, on generated data in throw-away workspaces")
    s.add_argument("--factors", required=True, help="comma-separated multiples of the shipped dataset's size, at "
                                                    "least two, e.g. 1,4,16")
    s.add_argument("--out", help="also write the markdown report here, e.g. docs/scale.md")
    s.add_argument("--workdir", help="folder for the per-factor workspaces (default: a temporary folder)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--keep", action="store_true", help="keep the generated data and workspaces")
    s.add_argument("--stages", help="comma-separated stages to measure, e.g. text,training (default: every stage but "
                                    "training, lmkg's full training to early stopping)")
    s.set_defaults(func=cmd_scale)

    s = sub.add_parser("jobs-bench", parents=[common], help="n background trainings one after the other, then at "
                                                            "once: wall times and how many ran together")
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--model", default="bpr")
    s.add_argument("--jobs", type=int, default=5)
    s.add_argument("--epochs", type=int, default=3)
    s.set_defaults(func=cmd_jobs_bench)

    s = sub.add_parser("explain", parents=[common], help="why a run's model recommends an item to a user")
    s.add_argument("run_id")
    s.add_argument("--user", required=True)
    s.add_argument("--item", required=True, help="a target item id")
    s.add_argument("--method", default="shap", choices=["shap", "lime", "both"])
    s.add_argument("--nsamples", type=int, help="SHAP coalitions (default 1000)")
    s.add_argument("--lime-samples", type=int, help="LIME perturbations (default 2000)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("explain-bench", parents=[common],
                       help="SHAP and LIME on n sampled top-1 recommendations: faithfulness checks and seconds")
    s.add_argument("run_id")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_explain_bench)

    s = sub.add_parser("map", parents=[common], help="(re)compute a run's embedding maps and domain alignment")
    s.add_argument("run_id")
    s.add_argument("--max-points", type=int, default=30000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--job", help=argparse.SUPPRESS)  # set by engine.jobs in the job's own process
    s.set_defaults(func=cmd_map)
    return p


def emit(args, obj, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if args.json else text)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


class ProgressBar:
    """Progress on stderr as a tqdm bar, created on the first update (closed-form models make none)."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, info: dict, fraction: float):
        from tqdm import tqdm
        if self.bar is None:
            self.bar = tqdm(total=100, desc=self.label, file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.bar.n = round(100 * fraction)
        self.bar.set_postfix_str(jobs.describe(info))

    def close(self):
        if self.bar is not None:
            self.bar.close()


def cmd_ingest(args):
    record = api.ingest(args.domain, args.interactions, args.items, args.kg, workspace=args.workspace,
                        replace=args.replace)
    for warning in record["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    emit(args, record, f"ingested '{record['name']}': {record['n_users']} users, {record['n_items']} items, "
                       f"{record['n_interactions']} interactions, {record['n_triples']} triples")


def cmd_generate(args):
    from . import generate
    summary = generate.generate(args.scale, args.out, args.seed, args.domains.split(","))
    emit(args, summary, table([[d, v["users"], v["items"], v["items_never_bought"], v["interactions"]]
                               for d, v in summary["domains"].items()],
                              ["domain", "users", "items", "never bought", "interactions"]) +
         f"\n{summary['shared_users']} users in both domains; written to {summary['folder']} in "
         f"{summary['seconds']:.1f} s (seed {summary['seed']})")


def cmd_datasets(args):
    rows = api.datasets(args.workspace)
    emit(args, rows, table([[d["name"], d["n_users"], d["n_items"], d["n_interactions"], d["n_triples"]]
                            for d in rows], ["name", "users", "items", "interactions", "triples"]))


def cmd_train(args):
    request = jobs.request_of(args.job, args.workspace) if args.job else train_request(args)
    if args.background:
        job = jobs.start_training(request, args.workspace)
        return emit(args, job, f"job {job['id']} started; `python -m engine jobs` shows its progress")
    with jobs.reporting(args.job, args.workspace) as reporter:
        bar = reporter or ProgressBar(request.model)
        try:
            record = runs.train(request, args.workspace, progress=bar, on_run=reporter and reporter.attach)
        finally:
            if not reporter:
                bar.close()
    if not record:  # a helper rank under torchrun: rank 0 reports
        return
    emit(args, record, f"run {record['id']} ({record['model']}, train {record['train_seconds']:.1f} s, "
                       f"eval {record['eval_seconds']:.2f} s)\n" + metrics_table(record["metrics"]))


def cmd_derive(args):
    settings = api.parse_settings(args.set, api.run(args.run, args.workspace)["model"])
    if args.background:
        job = api.start_derive(args.run, settings, args.workspace)
        return emit(args, job, f"job {job['id']} started; `python -m engine jobs` shows its progress")
    with jobs.reporting(args.job, args.workspace) as reporter:
        if reporter:
            reporter({"stage": "deriving the run"}, 0.0)
        record = api.derive(args.run, settings, workspace=args.workspace, on_run=reporter and reporter.attach)
    emit(args, record, f"run {record['id']} ({record['model']} from {args.run}, eval {record['eval_seconds']:.2f} s)\n"
                       + metrics_table(record["metrics"]))


def train_request(args, maps: bool | None = None) -> TrainRequest:
    missing = [f"--{name}" for name in ("source", "target", "model") if not getattr(args, name)]
    if missing:
        raise CrossLensError(f"{args.command} needs {', '.join(missing)}, e.g. `python -m engine {args.command} "
                             f"--source arts --target office --model lmkg`.")
    return TrainRequest(args.source, args.target, args.model, args.seed, args.cold_fraction, args.epochs,
                        api.parse_settings(args.set, args.model), getattr(args, "sampled", None),
                        not args.no_maps if maps is None else maps)


def cmd_tune(args):
    if args.job:
        request = tune.TuneRequest.from_dict(jobs.spec_of(args.job, "tune", args.workspace))
    else:
        request = tune.TuneRequest(train_request(args, maps=False), args.trials, args.budget, args.segment)
    if args.background:
        job = jobs.start_tuning(request, args.workspace)
        return emit(args, job, f"job {job['id']} started; `python -m engine jobs` shows its progress")
    with jobs.reporting(args.job, args.workspace) as reporter:
        bar = reporter or ProgressBar(f"tune {request.train.model}")
        try:
            record = tune.tune(request, args.workspace, progress=bar, on_run=reporter and reporter.attach)
        finally:
            if not reporter:
                bar.close()
    emit(args, record, study_text(record) + "\n\ntest run (the best trial's model, evaluated once):\n"
         + metrics_table(api.run(record["test_run"], args.workspace)["metrics"]))


def cmd_studies(args):
    if args.study_id:
        record = tune.read_study(args.study_id, args.workspace)
        return emit(args, record, study_text(record))
    rows = tune.studies(args.workspace)
    emit(args, rows, table([[s["id"], s["request"]["model"],
                             ",".join(s["request"]["source"]) + "->" + s["request"]["target"], s["status"],
                             len(s["trials"]), (s["best"] or {}).get("value"), s["defaults_value"], s["test_run"]]
                            for s in rows], ["study", "model", "scenario", "status", "trials", "best valid ndcg@10",
                                             "defaults", "test run"]))


def study_text(record: dict) -> str:
    """A study's trials (validation NDCG@10 of the segment it maximises), its best and the defaults' figure."""
    rows = [[t["number"], t["state"], t["value"], f"{t['seconds'] or 0:.1f}", t["run"],
             ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())]
            for t in record["trials"]]
    head = f"study {record['id']} ({record['status']}): {record['message']}"
    best = record["best"]
    if best and record["defaults_value"] is not None:
        head += (f"\nvalidation NDCG@10 ({record['request']['segment']} users): best {best['value']:.4f} "
                 f"(trial {best['number']}) against {record['defaults_value']:.4f} with the defaults (trial 1)")
    return head + "\n" + table(rows, ["trial", "state", "valid ndcg@10", "seconds", "run", "settings"])


def metrics_table(metrics: dict, names=HEADLINE) -> str:
    return table([[seg, metrics[seg]["cases"], *[metrics[seg].get(m) for m in names]] for seg in metrics],
                 ["segment", "cases", *names])


def cmd_runs(args):
    rows = api.runs(args.workspace)
    emit(args, rows, table([[r["id"], r["name"], r["model"],
                             ",".join(r["scenario"]["source"]) + "->" + r["scenario"]["target"],
                             r["scenario"]["seed"], r["status"],
                             *[(r["metrics"] or {}).get(seg, {}).get("ndcg@10") for seg in ("warm", "cold")],
                             ", ".join(r["tags"])]
                            for r in rows], ["run", "name", "model", "scenario", "seed", "status", "warm ndcg@10",
                                             "cold ndcg@10", "tags"]))


def cmd_label(args):
    r = api.label_run(args.run_id, args.name, args.tag, args.untag, args.note, workspace=args.workspace)
    emit(args, r, f"run {r['id']}\n{labels(r) or 'no name, tags or note'}")


def labels(r: dict) -> str:
    return "\n".join(filter(None, [r["name"] and f"name: {r['name']}", r["tags"] and f"tags: {', '.join(r['tags'])}",
                                   r["note"] and f"note: {r['note']}"]))


def cmd_delete_run(args):
    api.delete_run(args.run_id, args.workspace)
    emit(args, {"deleted": args.run_id}, f"deleted run {args.run_id}")


def cmd_show(args):
    r = api.run(args.run_id, args.workspace)
    head = (f"run {r['id']}: {r['model']} on {','.join(r['scenario']['source'])} -> {r['scenario']['target']} "
            f"(seed {r['scenario']['seed']}, cold fraction {r['scenario']['cold_fraction']}), {r['status']}")
    head += f"\n{labels(r)}" if labels(r) else ""
    if r["status"] == "trial":  # a tuning trial: validation figures only
        return emit(args, r, head + "\n" + metrics_table(r["metrics"]))
    emit(args, r, head + "\n" + (segment_tables(r["metrics"]) if r["metrics"] else (r["error"] or "")))


def segment_tables(metrics: dict) -> str:
    """A run's metrics: all of them for all, warm and cold users, then the headline ones per bucket group."""
    groups = evaluate.segment_groups(metrics)
    pick = lambda names: {seg: metrics[seg] for seg in names}
    parts = [metrics_table(pick(groups["users"]), sorted(metrics["all"].keys() - {"cases"}))]
    parts += [f"{title}\n{metrics_table(pick(groups[group]))}" for group, title in BUCKET_TABLES.items()
              if groups[group]]
    return "\n\n".join(parts)


def cmd_recommend(args):
    if args.user is None:
        return recommend_to_file(args)
    if args.out or args.reasons:
        raise CrossLensError("--out and --reasons go with --all or --histories; --user prints one user's list.")
    result = api.recommend(args.run_id, args.user, args.k, workspace=args.workspace)
    emit(args, result, f"user {result['user']}, from {result['basis']}:\n" +
         table([[i + 1, r["item_id"], r["title"][:70], r["score"], "yes" if r["held_out"] else ""]
                for i, r in enumerate(result["recommendations"])], ["#", "item", "title", "score", "held-out hit"]))


def recommend_to_file(args):
    if not args.out:
        raise CrossLensError("--all and --histories write a file: give it with --out FILE.csv or FILE.parquet.")
    bar = ProgressBar("recommend")
    try:
        result = api.recommend_to_file(args.run_id, args.out, args.k, args.reasons, args.histories,
                                       workspace=args.workspace, progress=bar)
    finally:
        bar.close()
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    emit(args, result, f"wrote {result['rows']:,} recommendations of {result['users']:,} users to {result['out']}")


def cmd_compare(args):
    result = api.compare(args.run_a, args.run_b, args.metric, workspace=args.workspace)
    emit(args, result, f"{result['metric']}: A = {args.run_a} ({result['model_a']}), B = {args.run_b} "
                       f"({result['model_b']}), Wilcoxon signed-rank on paired cases\n" +
         table([[seg, v["n"], v["mean_a"], v["mean_b"], v["mean_diff"], f"{v['p_value']:.2g}"]
                for seg, v in result["segments"].items()], ["segment", "cases", "A", "B", "A - B", "p"]))


def cmd_export(args):
    folder = api.export_run(args.run_id, args.out, args.format, workspace=args.workspace)
    emit(args, {"run_id": args.run_id, "format": args.format, "folder": str(folder)},
         f"exported the scenario of run {args.run_id} to {folder}")


def cmd_peer(args):
    from . import peers
    settings = api.parse_settings(args.set)
    if args.background:
        job = jobs.start_peer(args.source, args.target, args.model, args.seed, settings, workspace=args.workspace)
        return emit(args, job, f"job {job['id']} started; `python -m engine jobs` shows its progress")
    with jobs.reporting(args.job, args.workspace) as reporter:
        bar = reporter or ProgressBar(f"recbole-{args.model}")
        try:
            record = peers.run_peer(args.source, args.target, args.model, seed=args.seed, settings=settings,
                                    workspace=args.workspace, progress=bar, on_run=reporter and reporter.attach)
        finally:
            if not reporter:
                bar.close()
    c = record["config"]
    emit(args, record, f"run {record['id']} ({record['model']}, train {record['train_seconds']:.1f} s, "
                       f"eval {record['eval_seconds']:.2f} s; {c['stop_reason']} after {c['epochs_run']} epochs, "
                       f"best epoch {c['best_epoch']})\n" + metrics_table(record["metrics"]))


def cmd_jobs(args):
    rows = jobs.jobs(args.workspace)
    emit(args, rows, table([[j["id"], j["status"], f"{100 * j['progress']:.0f}%", j["spec"].get("kind", "train"),
                             j["spec"].get("model", ""),
                             f"{','.join(j['spec'].get('source', []))} -> {j['spec'].get('target', '')}",
                             j["run_id"] or "", j["message"] or ""] for j in rows],
                           ["job", "status", "progress", "kind", "model", "scenario", "run", "message"]))


def cmd_cancel(args):
    job = jobs.cancel_job(args.job_id, args.workspace)
    emit(args, job, f"job {job['id']}: {job['status']}")


def cmd_setup(args):
    api.setup(args.workspace, progress_factory=ProgressBar, log=lambda m: print(m, file=sys.stderr),
              background=args.background)
    if not args.background:
        cmd_runs(args)


def cmd_bench(args):
    from . import bench
    seeds = lambda text: [int(s) for s in text.split(",")] if text else None
    report = bench.run(args.source, args.target, both=args.both,
                       models=[m.strip() for m in args.models.split(",")] if args.models else None,
                       peers=[p.strip() for p in args.peers.split(",")] if args.peers else None,
                       seeds=seeds(args.seeds), side_seeds=seeds(args.ablation_seeds),
                       peer_seeds=seeds(args.peer_seeds), out=args.out,
                       workspace=args.workspace, progress_factory=ProgressBar, reuse=args.reuse)
    emit(args, report["rows"], report["markdown"])


def cmd_speed(args):
    from . import speed
    from .device import use_device
    if args.device:
        use_device(args.device)  # before any model or encoder exists
    bar = ProgressBar("lmkg")
    try:
        figures = speed.run(args.source, args.target, args.seed, args.workspace, progress=bar)
    finally:
        bar.close()
    emit(args, figures, table([[k, v] for k, v in figures.items()], ["measure", "value"]))


def cmd_scale(args):
    from . import scale
    bar = ProgressBar("scale")
    try:
        stages = args.stages.split(",") if args.stages else scale.DEFAULT_STAGES
        report = scale.run(args.factors, out=args.out, workdir=args.workdir, seed=args.seed, keep=args.keep,
                           stages=stages, progress=bar)
    finally:
        bar.close()
    if report["workdir"]:
        print(f"kept the workspaces in {report['workdir']}", file=sys.stderr)
    emit(args, {k: v for k, v in report.items() if k != "markdown"}, report["markdown"])


def cmd_explain(args):
    r = api.explain(args.run_id, args.user, args.item, args.method, workspace=args.workspace,
                    nsamples=args.nsamples, lime_samples=args.lime_samples, seed=args.seed)
    methods = [m for m in ("shap", "lime") if m in r]
    rows = sorted(r["features"], key=lambda f: -f[methods[0]])
    disagree = "methods_disagree" in r["features"][0]
    lines = [r["summary"], "",
             f"user {r['user']} ({r['basis']}), item {r['item_id']} {r['title'][:60]!r}: score {r['score']:.4f}, "
             f"with every feature removed {r['base_value']:.4f} (scores spread {r['score_scale']:.4f} over items)",
             table([[f["kind"], _clip(f["label"], f["kind"]), *[f[m] for m in methods],
                     *(["yes" if f["methods_disagree"] else ""] if disagree else [])] for f in rows],
                   ["kind", "feature", *methods, *(["signs differ"] if disagree else [])])]
    if "shap" in r:
        lines.append(f"SHAP: base + sum of attributions is off the score by {r['shap']['additivity_error']:.2e}")
    if "lime" in r:
        lines.append(f"LIME: local R^2 {r['lime']['score']:.4f}, surrogate predicts {r['lime']['local_pred']:.4f} "
                     f"where the model scores {r['score']:.4f}")
    if r["agreement"] is not None:
        lines.append(f"SHAP-LIME rank agreement (Spearman): {r['agreement']:.4f}")
    for m, check in (r["deletion"] or {}).items():
        lines.append(f"{m.upper()} deletion check: removing its top 3 lowers the score by {check['top_drop']:.4f}, "
                     f"3 random features by {check['random_drop']:.4f} on average"
                     f" ({'passed' if check['wins'] else 'failed'})")
    emit(args, r, "\n".join(lines))


def _clip(label: str, kind: str, width: int = 70) -> str:
    """A label cut to width: titles keep their start and domain, entity paths their end (where levels differ)."""
    if len(label) <= width:
        return label
    if kind == "entity":
        relation, _, value = label.partition(": ")
        return f"{relation}: ...{value[-(width - len(relation) - 5):]}"
    title, _, domain = label.rpartition(" (")
    return f"{title[: width - len(domain) - 5]}... ({domain}"


def cmd_jobs_bench(args):
    from . import jobs_bench
    bar = ProgressBar("jobs-bench")
    try:
        r = jobs_bench.run(args.source, args.target, args.model, args.jobs, args.epochs, args.workspace, bar)
    finally:
        bar.close()
    emit(args, r, f"{r['jobs']} {r['model']} trainings ({r['epochs']} epochs), at most {r['limit']} at once with "
                  f"{r['threads_per_job']} thread(s) each\n" +
         table([["one after the other", r["alone_total"], 1], ["submitted at once", r["together_seconds"],
                                                                r["most_running_at_once"]]],
               ["how", "wall seconds", "most running at once"]) +
         f"\ntogether / alone: {r['ratio']:.3f}; alone, each: {', '.join(f'{s:.1f}' for s in r['alone_seconds'])} s")


def cmd_explain_bench(args):
    bar = ProgressBar("explain-bench")
    try:
        result = api.explain_bench(args.run_id, args.n, args.seed, workspace=args.workspace, progress=bar)
    finally:
        bar.close()
    s = result["summary"]
    head = (f"run {result['run_id']} ({result['model']}): top-1 recommendation of {result['cases']} seeded test users, "
            f"histories up to {result['history_items']['max']} items (mean {result['history_items']['mean']:.1f}), "
            f"features up to {result['features']['max']}; {result['cpu_threads']} torch thread(s) on "
            f"{result['cpu_cores']} CPU core(s)")
    rows = [[m.upper(), f"{result['nsamples'] if m == 'shap' else result['lime_samples']}",
             s[m]["deletion_win_share"], s[m]["deletion_cases"],
             _sci(s[m].get("additivity_error_relative_mean")), s[m].get("r2_mean"), s[m]["agreement_mean"],
             s[m]["seconds_mean"], s[m]["seconds_p95"]] for m in ("shap", "lime")]
    c = s["counterfactual"]
    counter = (f"counterfactual (history items whose removal drops the item out of the top 10): found for "
               f"{c['found_share']:.0%} of the {c['cases']} recommendations"
               + (f", {c['size_mean']:.1f} items on average; {c['verified_share']:.0%} verified by re-scoring"
                  if c["verified_share"] is not None else ""))
    emit(args, result, head + "\n" + table(rows, ["method", "samples", "deletion wins", "cases",
                                                   "additivity err / scale", "LIME R^2", "SHAP-LIME rho",
                                                   "s mean", "s p95"]) + "\n" + counter)


def _sci(value) -> str:
    return "" if value is None else f"{value:.1e}"


def cmd_map(args):
    with jobs.reporting(args.job, args.workspace) as reporter:
        if reporter:
            reporter.attach(args.run_id)
            reporter({"stage": "embedding maps"}, 0.0)
        summary = api.compute_maps(args.run_id, workspace=args.workspace, max_points=args.max_points,
                                   seed=args.seed)
    emit(args, summary, f"maps of run {args.run_id}: {summary['items_mapped']} of {summary['items']} items, "
                        f"{summary['users_mapped']} users; alignment (share of an item's {summary['k']} nearest "
                        f"neighbours from another domain) {summary['alignment']:.4f}, fully mixed would be "
                        f"{summary['expected_mixed']:.4f}; vectors {summary['seconds']['vectors']:.1f} s, neighbours "
                        f"{summary['seconds']['neighbours']:.1f} s, UMAP {summary['seconds']['umap']:.1f} s\n" +
         table([[d, v["items"], v["alignment"], v["expected_mixed"]] for d, v in summary["per_domain"].items()],
               ["domain", "items", "alignment", "fully mixed"]))


if __name__ == "__main__":
    sys.exit(main())
