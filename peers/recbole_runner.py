"""Train a RecBole 1.2.1 peer (SASRec or LightGCN) on an exported scenario and rank its warm test cases.

Runs inside .venv-recbole (RecBole 1.2.1 needs old numpy/scipy), so it never imports `engine`. Input: a folder
written by engine.export.export_recbole (<name>.inter + <name>.test.jsonl). RecBole trains with its own config,
dataset and trainer on <name>.inter: its validation is leave-one-out inside that training data (each user's last
training interaction), early stopping on its full-ranking valid NDCG@10. Then the trained model itself scores every
target item for each test case (SASRec from the case's target history, LightGCN from the user's embedding), the
case's known items are masked, and the top 20 external item ids are written as JSON. Items RecBole never saw in
training have no score: they are simply not listed, i.e. ranked last.

    .venv-recbole/bin/python peers/recbole_runner.py EXPORT_DIR --model SASRec --seed 0 --out result.json \
        [--settings '{"epochs": 20, "threads": 1}']

Progress: one JSON line per epoch on stdout ({"epoch": e, "epochs": n, "valid_ndcg@10": v}); RecBole's log on stderr.
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
# Budgets for one run under ~10 minutes on 2 idle CPU cores (see DEVELOPERS.md): capped epochs, early stopping after
# 3 validations without a better valid NDCG@10. Everything else is RecBole's default for the model.
DEFAULTS = {
    "common": {"stopping_step": 3, "eval_batch_size": 4096, "learning_rate": 0.001},
    "SASRec": {"epochs": 5, "train_batch_size": 512, "MAX_ITEM_LIST_LENGTH": MAX_SEQ,
               "train_neg_sample_args": None},  # CE loss over all items: RecBole requires no negative sampling
    # LightGCN validates every 5 epochs: its untrained first epoch scores popularity-like and the next few dip below
    # it, which stopping after 3 epoch-wise validations would mistake for convergence.
    "LightGCN": {"epochs": 200, "train_batch_size": 2048, "eval_step": 5},
}
MODELS = tuple(m for m in DEFAULTS if m != "common")


def settings_for(model: str, seed: int, overrides: dict) -> dict:
    settings = {**DEFAULTS["common"], **DEFAULTS[model], **overrides, "seed": seed}
    # RecBole keeps only validated weights: validate at least once, however few the epochs
    settings["eval_step"] = min(settings.get("eval_step", 1), settings["epochs"])
    return settings


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
    recbole_settings = {k: v for k, v in settings.items() if k != "threads"}
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

    def report(epoch, score):
        valid_scores.append((epoch + 1, float(score)))
        if not best or score > best["score"]:
            best.update(score=score, state={k: v.detach().clone() for k, v in model.state_dict().items()})
        print(json.dumps({"epoch": epoch + 1, "epochs": config["epochs"], "valid_ndcg@10": score}), flush=True)

    started = time.time()
    best_score, _ = trainer.fit(train_data, valid_data, saved=False, show_progress=False, callback_fn=report)
    train_seconds = time.time() - started
    if best:
        model.load_state_dict(best["state"])
    model.eval()
    if hasattr(model, "restore_user_e"):  # LightGCN caches propagated embeddings; recompute them from these weights
        model.restore_user_e = model.restore_item_e = None

    cases = [json.loads(line) for line in open(export_dir / f"{name}.test.jsonl", encoding="utf-8")]
    started = time.time()
    top, notes = rank(model, dataset, cases, config)
    shutil.rmtree(scratch, ignore_errors=True)
    return {"model": model_name, "recbole": _version("recbole"), "torch": torch.__version__,
            "device": str(config["device"]),
            "settings": {k: settings[k] for k in sorted(settings)}, "train_seconds": train_seconds,
            "rank_seconds": time.time() - started, "best_valid_ndcg@10": float(best_score),
            "valid_ndcg@10_per_epoch": valid_scores, "best_epoch": max(valid_scores, key=lambda v: v[1])[0],
            "train_interactions": n_rows, "users": dataset.user_num - 1,
            "items": dataset.item_num - 1, **notes, "cases": [c["case"] for c in cases], "top": top}


def rank(model, dataset, cases: list[dict], config, batch_size: int = 512) -> tuple[list[list[str]], dict]:
    """Top-TOP external item ids per case from the model's full scores, the case's exclude items masked."""
    from recbole.data.interaction import Interaction

    items = dataset.field2token_id[dataset.iid_field]
    users = dataset.field2token_id[dataset.uid_field]
    tokens = dataset.field2id_token[dataset.iid_field]
    notes = {"unknown_users": 0, "empty_histories": 0, "unknown_history_items": 0}
    top = []
    with torch.no_grad():
        for lo in range(0, len(cases), batch_size):
            batch = cases[lo:lo + batch_size]
            if hasattr(model, "ITEM_SEQ"):  # sequential: the case's own target history, last MAX_SEQ known items
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
            scores[:, 0] = -torch.inf  # RecBole's padding item
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
