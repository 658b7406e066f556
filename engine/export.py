"""Export a scenario's target domain as RecBole atomic files, so external peers train on exactly our split.

A peer sees what a target-only model of ours sees: the target domain's training interactions (cold users have none
there by construction, so peers cannot serve them) and, per warm test case, the case's target history. Written:

    <out>/<name>/<name>.inter       user_id:token  item_id:token  timestamp:float   (scenario.train, target rows)
    <out>/<name>/<name>.test.jsonl  one warm test case per line, in the order of scenario.test: case (row index in
                                    scenario.test), user_id, history (target item ids, oldest first), exclude,
                                    relevant

Ids are the external ones (users' and items' ids as ingested).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from .errors import CrossLensError
from .scenario import Scenario

FORMATS = ("recbole",)
INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float"
# RecBole reads atomic files with pandas: a tab or newline would split a field, a quote starts a quoted field.
UNSAFE = ("\t", "\n", "\r", '"')


def dataset_name(scenario: Scenario) -> str:
    spec = scenario.spec
    return f"{spec['target']}_from_{'_'.join(spec['source'])}_seed{spec['seed']}"


def export_recbole(scenario: Scenario, out_dir, name: str | None = None) -> Path:
    """Write the atomic files into out_dir/<name>/ (replacing an earlier export of that name); returns that folder."""
    name = name or dataset_name(scenario)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    item_ids = scenario.items["item_id"].astype(str).to_numpy()
    user_ids = np.asarray(scenario.users).astype(str)

    train = scenario.train[scenario.train["domain"] == 0]  # already sorted by user, then time
    _check_ids(user_ids[train["user"]], "user")
    _check_ids(item_ids[: scenario.n_target], "item")

    staging = out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        with open(staging / f"{name}.inter", "w", encoding="utf-8", newline="\n") as f:
            f.write(INTER_HEADER + "\n")
            for u, i, t in zip(user_ids[train["user"]], item_ids[train["item"]], train["timestamp"]):
                f.write(f"{u}\t{i}\t{float(t)!r}\n")
        with open(staging / f"{name}.test.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for case in warm_cases(scenario):
                f.write(json.dumps({**case, "user_id": user_ids[case["user_id"]],
                                    **{k: item_ids[case[k]].tolist() for k in ("history", "exclude", "relevant")}})
                        + "\n")
        final = out_dir / name
        if final.exists():  # rename the old export aside first, so the swap itself is one rename
            old = out_dir / f".{name}.{uuid.uuid4().hex}.old"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def warm_cases(scenario: Scenario):
    """Per warm test case (scenario.test order): case row, user index, target history, exclude, relevant."""
    cases = scenario.test
    for row in np.flatnonzero(cases.segment == "warm"):
        history = cases.history[row]
        yield {"case": int(row), "user_id": int(cases.user[row]), "history": history[history < scenario.n_target],
               "exclude": cases.exclude[row], "relevant": cases.relevant[row]}


def _check_ids(ids: np.ndarray, kind: str) -> None:
    bad = [i for i in np.unique(ids) if any(c in i for c in UNSAFE) or not i.strip()]
    if bad:
        raise CrossLensError(f"{len(bad)} {kind} id(s) cannot be written to a RecBole atomic file (first: {bad[0]!r}): "
                             f"ids must be non-blank and contain no tab, line break or double quote; re-ingest the "
                             f"dataset with such ids replaced.")
