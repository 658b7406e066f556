"""Export a scenario as RecBole atomic files, so external peers train on exactly our split.

Two views of the same scenario:
- target only (default): what a target-only model of ours sees. The target domain's training interactions (cold
  users have none there by construction, so such a peer cannot serve them) and, per warm test case, the case's
  target history. Item ids are the external ones.
- mixed (`mixed=True`): what a cross-domain sequential model sees. Every domain's training interactions, per user in
  time order, and every test case, warm and cold, with its whole history in any domain (a cold user's is their
  source items). Item ids become `<domain>:<item_id>` (domain names contain no ':'), unique across domains.

Written, in both views:

    <out>/<name>/<name>.inter        user_id:token  item_id:token  timestamp:float   (rows of scenario.train)
    <out>/<name>/<name>.test.jsonl   one test case per line, in the order of scenario.test: case (row index in
                                     scenario.test), user_id, history (item ids, oldest first), exclude, relevant
    <out>/<name>/<name>.targets.txt  the target domain's item ids, one a line: the only items a peer ranks

scenario.train holds no validation or test interaction, so neither view's .inter does. User ids are the external
ones.
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


def dataset_name(scenario: Scenario, mixed: bool = False) -> str:
    spec = scenario.spec
    return f"{spec['target']}_from_{'_'.join(spec['source'])}_seed{spec['seed']}" + ("_mixed" if mixed else "")


def export_recbole(scenario: Scenario, out_dir, name: str | None = None, mixed: bool = False) -> Path:
    """Write the atomic files of the target-only or the mixed view into out_dir/<name>/ (replacing an earlier
    export of that name); returns that folder."""
    name = name or dataset_name(scenario, mixed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = item_tokens(scenario, mixed)
    user_ids = np.asarray(scenario.users).astype(str)

    train = training_rows(scenario, mixed)  # sorted by user, then time
    _check_ids(user_ids[train["user"]], "user")
    _check_ids(tokens if mixed else tokens[: scenario.n_target], "item")

    staging = out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        with open(staging / f"{name}.inter", "w", encoding="utf-8", newline="\n") as f:
            f.write(INTER_HEADER + "\n")
            for u, i, t in zip(user_ids[train["user"]], tokens[train["item"]], train["timestamp"]):
                f.write(f"{u}\t{i}\t{float(t)!r}\n")
        with open(staging / f"{name}.test.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for case in peer_cases(scenario, mixed):
                f.write(json.dumps({**case, "user_id": user_ids[case["user_id"]],
                                    **{k: tokens[case[k]].tolist() for k in ("history", "exclude", "relevant")}})
                        + "\n")
        with open(staging / f"{name}.targets.txt", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{i}\n" for i in tokens[: scenario.n_target])
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


def item_tokens(scenario: Scenario, mixed: bool = False) -> np.ndarray:
    """The exported id of every item, by global item index: its own id, or in the mixed view `<domain>:<id>` (two
    domains may use the same id for different items)."""
    ids = scenario.items["item_id"].astype(str)
    return (scenario.items["domain"] + ":" + ids if mixed else ids).to_numpy()


def training_rows(scenario: Scenario, mixed: bool = False):
    """The scenario.train rows a peer trains on: the target domain's, or in the mixed view all of them."""
    return scenario.train if mixed else scenario.train[scenario.train["domain"] == 0]


def case_rows(scenario: Scenario, mixed: bool = False) -> np.ndarray:
    """The scenario.test rows a peer is scored on: the warm ones (a cold user has no target history), or in the
    mixed view all of them."""
    return np.arange(len(scenario.test)) if mixed else np.flatnonzero(scenario.test.segment == "warm")


def peer_cases(scenario: Scenario, mixed: bool = False):
    """Per case of case_rows (scenario.test order): case row, user index, history (the case's own, as our models
    see it: target items only unless mixed), exclude, relevant."""
    cases = scenario.test
    for row in case_rows(scenario, mixed):
        history = cases.history[row]
        yield {"case": int(row), "user_id": int(cases.user[row]),
               "history": history if mixed else history[history < scenario.n_target],
               "exclude": cases.exclude[row], "relevant": cases.relevant[row]}


def _check_ids(ids: np.ndarray, kind: str) -> None:
    bad = [i for i in np.unique(ids) if any(c in i for c in UNSAFE) or not i.strip()]
    if bad:
        raise CrossLensError(f"{len(bad)} {kind} id(s) cannot be written to a RecBole atomic file (first: {bad[0]!r}): "
                             f"ids must be non-blank and contain no tab, line break or double quote; re-ingest the "
                             f"dataset with such ids replaced.")
