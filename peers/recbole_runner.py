"""Train a RecBole 1.2.1 peer (SASRec or LightGCN) on an exported scenario and rank its test cases.

Runs inside .venv-recbole (RecBole 1.2.1 needs old numpy/scipy), so it never imports `engine`. Input: a folder
written by engine.export.export_recbole (<name>.inter, <name>.test.jsonl, <name>.targets.txt; target-only or mixed
view). RecBole trains with its own config, dataset and trainer on <name>.inter: its validation is leave-one-out
inside that training data (each user's last training interaction). Training stops at the first of: `stopping_step`
validations without a better valid NDCG@10 (early stopping), `time_budget` seconds passed at a validation (time
budget), `epochs` (epoch limit); the best validated weights are kept. Then the trained model itself scores every
target item (<name>.targets.txt) for each test case (SASRec from the case's exported history, LightGCN from the
user's embedding), the case's known items are masked, and the top 20 item ids are written as JSON with how training
went (epochs_run, best_epoch, stop_reason). Items RecBole never saw in training have no score: they are simply not
listed, i.e. ranked last.

    .venv-recbole/bin/python peers/recbole_runner.py EXPORT_DIR --model SASRec --seed 0 --out result.json \
        [--settings '{"time_budget": 3600, "threads": 1}']

Progress: one JSON line per validation on stdout ({"epoch", "epochs", "loss", "valid_ndcg@10", "seconds",
"time_budget"}); RecBole's log on stderr.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

TOP = 20
MAX_SEQ = 50
# Train to convergence (see DEVELOPERS.md): early stopping after `stopping_step` validations without a better valid
# NDCG@10, an epoch limit that only a runaway run reaches, and a time budget in seconds as the backstop. Everything
# else is RecBole's default for the model.
DEFAULTS = {
    "common": {"eval_batch_size": 4096, "learning_rate": 0.001, "time_budget": 3600},
    # Validated every epoch; 5 epochs of patience ride out the noise of one validation without spending a third of
    # the budget (an epoch takes 2-5 minutes on the shipped data) after the peak.
    "SASRec": {"epochs": 300, "stopping_step": 5, "train_batch_size": 512, "MAX_ITEM_LIST_LENGTH": MAX_SEQ,
               "train_neg_sample_args": None},  # CE loss over all items: RecBole requires no negative sampling
    # LightGCN validates every 5 epochs: its untrained first epoch scores popularity-like and the next few dip below
    # it, which epoch-wise validation with a short patience would mistake for convergence. Its epochs are cheap, so
    # RecBole's default patience of 10 validations (50 epochs) costs little for a slowly rising curve.
    "LightGCN": {"epochs": 1000, "stopping_step": 10, "train_batch_size": 2048, "eval_step": 5},
}
MODELS = tuple(m for m in DEFAULTS if m != "common")
OURS = ("threads", "time_budget")  # settings of this runner, not RecBole's


def settings_for(model: str, seed: int, overrides: dict) -> dict:
    settings = {**DEFAULTS["common"], **DEFAULTS[model], **overrides, "seed": seed}
    # RecBole keeps only validated weights: validate at least once, however few the epochs
    settings["eval_step"] = min(settings.get("eval_step", 1), settings["epochs"])
    if settings["stopping_step"] < 1:
        raise SystemExit(f"stopping_step must be at least 1 validation, got {settings['stopping_step']}")
    return settings


def stop_reason(scores: list[float], epoch: int, epochs: int, elapsed: float, budget: float | None,
                patience: int) -> str | None:
    """Why training stops after the validation at `epoch` (1-based), or None to go on. scores: valid NDCG@10 of
    every validation so far, this one last; elapsed: seconds since training began; budget: 0 or None for none.
    Early stopping as our own models do it: `patience` validations in a row without a better score than the best
    before them (a tie is no improvement)."""
    if len(scores) - 1 - scores.index(max(scores)) >= patience:
        return "early stopping"
    if epoch >= epochs:
        return "epoch limit"
    if budget and elapsed >= budget:
        return "time budget"
    return None


class _Stop(Exception):
    """Raised from RecBole's per-validation callback to end Trainer.fit, which has no time budget; carries why."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--settings", default="{}", help="JSON object of RecBole settings overriding the budgets, plus "
                                                    "'threads' (torch CPU threads; default: torch's choice)")
    args = p.parse_args(argv)
    out = args.out.resolve()  # before run() changes the working folder
    result = run(args.export_dir.resolve(), args.model, args.seed, json.loads(args.settings))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
    return 0


def run(export_dir: Path, model_name: str, seed: int, overrides: dict) -> dict:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    name = export_dir.name
    settings = settings_for(model_name, seed, overrides)
    recbole_settings = {k: v for k, v in settings.items() if k not in OURS}
    if settings.get("threads"):  # on a busy machine one thread per process beats oversubscribed cores
        torch.set_num_threads(int(settings["threads"]))
    scratch = Path(tempfile.mkdtemp(prefix="recbole-", dir=export_dir.parent))
    os.chdir(scratch)  # RecBole writes its log/, log_tensorboard/ and checkpoints relative to the working folder
    config = Config(model=model_name, dataset=name, config_dict={
        **recbole_settings,
        "data_path": str(export_dir.parent), "checkpoint_dir": str(scratch / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "use_gpu": torch.cuda.is_available(), "reproducibility": True, "show_progress": False, "worker": 0,
    })
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    n_rows = _check_tokens(dataset, export_dir / f"{name}.inter")
    train_data, valid_data, _ = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    valid_scores = []  # (epoch, valid NDCG@10), one per validation
    best = {}  # the best epoch's weights, kept in memory: no checkpoint file to unpickle

    def report(epoch_index, score):
        epoch, score, elapsed = epoch_index + 1, float(score), time.time() - train_started
        valid_scores.append((epoch, score))
        if not best or score > best["score"]:
            best.update(epoch=epoch, score=score, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        loss = float(trainer.train_loss_dict[epoch_index])
        print(json.dumps({"epoch": epoch, "epochs": config["epochs"], "loss": loss, "valid_ndcg@10": score,
                          "seconds": elapsed, "time_budget": settings["time_budget"]}), flush=True)
        reason = stop_reason([s for _, s in valid_scores], epoch, config["epochs"], elapsed, settings["time_budget"],
                             config["stopping_step"])
        if reason:
            raise _Stop(reason, epoch)

    # RecBole's own early stopping (same stopping_step, but a tie resets it and it stops one validation later)
    # never fires before stop_reason's, so the reason is always ours.
    train_started = time.time()
    try:
        trainer.fit(train_data, valid_data, saved=False, show_progress=False, callback_fn=report)
        stopped, epochs_run = "epoch limit", config["epochs"]  # the last epochs fell between validations
    except _Stop as stop:
        stopped, epochs_run = stop.args
    train_seconds = time.time() - train_started
    if best:
        model.load_state_dict(best["state"])
    model.eval()
    if hasattr(model, "restore_user_e"):  # LightGCN caches propagated embeddings; recompute them from these weights
        model.restore_user_e = model.restore_item_e = None

    cases = [json.loads(line) for line in open(export_dir / f"{name}.test.jsonl", encoding="utf-8")]
    targets = (export_dir / f"{name}.targets.txt").read_text(encoding="utf-8").splitlines()
    started = time.time()
    top, notes = rank(model, dataset, cases, targets, config)
    shutil.rmtree(scratch, ignore_errors=True)
    return {"model": model_name, "recbole": _version("recbole"), "torch": torch.__version__,
            "device": str(config["device"]),
            "settings": {k: settings[k] for k in sorted(settings)}, "train_seconds": train_seconds,
            "rank_seconds": time.time() - started, "best_valid_ndcg@10": best["score"],
            "valid_ndcg@10_per_epoch": valid_scores, "best_epoch": best["epoch"], "epochs_run": epochs_run,
            "stop_reason": stopped,
            "train_interactions": n_rows, "users": dataset.user_num - 1,
            "items": dataset.item_num - 1, **notes, "cases": [c["case"] for c in cases], "top": top}


def rank(model, dataset, cases: list[dict], targets: list[str], config,
         batch_size: int = 512) -> tuple[list[list[str]], dict]:
    """Top-TOP item ids per case from the model's full scores over the target items, the case's exclude items
    masked."""
    from recbole.data.interaction import Interaction

    items = dataset.field2token_id[dataset.iid_field]
    users = dataset.field2token_id[dataset.uid_field]
    tokens = dataset.field2id_token[dataset.iid_field]
    # Only target items are ranked (the mixed view trains on source items too); the padding item 0 is none.
    candidates = torch.zeros(dataset.item_num, dtype=torch.bool)
    candidates[[items[t] for t in targets if t in items]] = True
    notes = {"unknown_users": 0, "empty_histories": 0, "unknown_history_items": 0,
             "unscored_target_items": len(targets) - int(candidates.sum())}
    top = []
    with torch.no_grad():
        for lo in range(0, len(cases), batch_size):
            batch = cases[lo:lo + batch_size]
            if hasattr(model, "ITEM_SEQ"):  # sequential: the case's exported history, last MAX_SEQ known items
                seqs = []
                for c in batch:
                    seq = [items[i] for i in c["history"] if i in items]
                    notes["unknown_history_items"] += len(c["history"]) - len(seq)
                    notes["empty_histories"] += not seq
                    seqs.append(seq[-config["MAX_ITEM_LIST_LENGTH"]:])
                matrix = torch.zeros(len(batch), config["MAX_ITEM_LIST_LENGTH"], dtype=torch.long)
                for r, seq in enumerate(seqs):
                    matrix[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                # An empty history is read as one padding token: the model's guess for a user it knows nothing of.
                lengths = torch.tensor([max(len(s), 1) for s in seqs], dtype=torch.long)
                inter = Interaction({model.ITEM_SEQ: matrix, model.ITEM_SEQ_LEN: lengths})
                known = torch.ones(len(batch), dtype=torch.bool)
            else:  # general: the user's learnt embedding
                ids = [users.get(c["user_id"], 0) for c in batch]
                known = torch.tensor([i > 0 for i in ids])
                notes["unknown_users"] += int((~known).sum())
                inter = Interaction({dataset.uid_field: torch.tensor(ids, dtype=torch.long)})
            scores = model.full_sort_predict(inter.to(config["device"])).view(len(batch), -1).float().cpu()
            scores[:, ~candidates] = -torch.inf
            scores[~known] = -torch.inf  # no embedding: nothing to rank by
            for r, c in enumerate(batch):
                masked = [items[i] for i in c["exclude"] if i in items]
                scores[r, masked] = -torch.inf
            values, index = scores.topk(TOP, dim=1)
            top += [[tokens[i] for i, v in zip(row, val) if v > -torch.inf]
                    for row, val in zip(index.tolist(), values.tolist())]
    return top, notes


def _check_tokens(dataset, inter_file: Path) -> int:
    """RecBole parses tokens with pandas; make sure every id came through unchanged (e.g. 'NA' would not).
    Returns the number of interactions in the file."""
    with open(inter_file, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    for field, column in ((dataset.uid_field, 0), (dataset.iid_field, 1)):
        if set(dataset.field2id_token[field][1:]) != {r[column] for r in rows}:
            raise SystemExit(f"RecBole changed some {field} tokens of {inter_file} while reading them (ids such as "
                             f"'NA' or 'null' are read as missing); rename those ids and export again.")
    return len(rows)


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    sys.exit(main())
