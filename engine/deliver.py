"""Recommendations out: the top-k target items of many users, streamed in batches to a CSV or Parquet file.

Who is scored, from what:
- every user of the run's scenario, from their whole history there (training and held-out interactions, every
  domain, oldest first): what the run would recommend to them today;
- or users from a file of histories (user_id, item_id[, timestamp][, domain]), read and checked like an upload,
  each scored from the file's rows alone (models that score from the history only: the run has no trained vector
  for a user it never saw).
Target items in a user's history are never recommended. With `reasons`, each recommendation names the history item
whose removal lowers its score most, found by re-scoring the history without each of its REASON_ITEMS most recent
items with the model itself.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import data
from .evaluate import block_rows
from .errors import CrossLensError
from .scenario import Batch, Ragged, Scenario
from .spreadsheet import safe_table

FORMATS = (".csv", ".parquet")
BATCH = 512          # users scored at once
REASON_ITEMS = 20    # most recent history items tried as a recommendation's reason
PERTURBED_ROWS = 4096  # perturbed histories scored at once when reasons are asked for


def check_output(out) -> Path:
    """The output path, refused before anything is loaded or scored when its format or folder is wrong."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise CrossLensError(f"cannot write recommendations to '{out.name}': use a .csv or .parquet file name.")
    if not out.parent.is_dir():
        raise CrossLensError(f"the folder {out.parent} does not exist; create it or choose another --out.")
    return out


def check_k(k: int, n_target: int) -> None:
    if not 1 <= k <= n_target:
        raise CrossLensError(f"k must be between 1 and {n_target} (the target domain's items), got {k}.")


def scenario_histories(sc: Scenario) -> tuple[np.ndarray, list[str], Ragged]:
    """(user indices, user ids, histories) of every user of the scenario, from everything it knows of them."""
    users, histories = sc.known_histories()
    return users, [str(u) for u in sc.users[users]], histories


def file_histories(sc: Scenario, path) -> tuple[np.ndarray, list[str], Ragged, list[str]]:
    """(user indices: -1, user ids, histories, warnings) from a file of interactions in the scenario's domains.
    Item ids are looked up in the domain the row names, or in every domain when the file has no domain column
    (an id found in two domains then needs one); rows of unknown items are dropped with a warning."""
    rows, warnings = data.read_histories(path)
    name = Path(path).name
    index = pd.Series(np.arange(sc.n_items), index=pd.MultiIndex.from_arrays([sc.items["domain"], sc.items["item_id"]]))
    if "domain" in rows.columns:
        unknown_domains = sorted(set(rows["domain"]) - set(sc.domains))
        if unknown_domains:
            raise data.DatasetError([data.Problem(name, [], "domain", f"domain(s) {', '.join(map(repr, unknown_domains))}"
                                                  f" are not in this run (its domains: {', '.join(sc.domains)})",
                                                  "name one of the run's domains in every row, or drop the column")])
        item = index.reindex(pd.MultiIndex.from_arrays([rows["domain"], rows["item_id"]])).to_numpy()
    else:
        by_id = pd.Series(index.to_numpy(), index=index.index.get_level_values(1))
        ambiguous = by_id.index.duplicated(keep=False)
        twice = rows["item_id"].isin(by_id.index[ambiguous])
        if twice.any():
            raise data.DatasetError([data.Problem(name, list(np.flatnonzero(twice.to_numpy())[:5] + 1), "item_id",
                                                  f"item_id {rows['item_id'][twice].iloc[0]!r} is an item of more "
                                                  f"than one of the run's domains", "add a domain column")])
        item = by_id[~ambiguous].reindex(rows["item_id"]).to_numpy()
    known = ~np.isnan(item)
    if not known.all():
        examples = ", ".join(map(repr, rows["item_id"][~known].unique()[:3]))
        warnings.append(f"{name}: {int((~known).sum())} row(s) name items the run does not know (e.g. {examples}); "
                        f"they were left out")
    if not known.any():
        raise CrossLensError(f"{name} names no item of this run's domains ({', '.join(sc.domains)}); nothing to score.")
    rows = rows[known].assign(item=item[known].astype(np.int64))
    user_ids, user = np.unique(rows["user_id"].to_numpy(dtype=str), return_inverse=True)
    order = np.lexsort((np.arange(len(rows)), rows["timestamp"].to_numpy(), user))  # oldest first, then file order
    histories = Ragged.from_groups(user[order], rows["item"].to_numpy()[order], len(user_ids))
    return np.full(len(user_ids), -1), list(user_ids), histories, warnings


def recommendations(sc: Scenario, model, users: np.ndarray, user_ids: list[str], histories: Ragged, k: int,
                    reasons: bool = False, progress=None):
    """Yield one frame per batch of users: user_id, rank, item_id, title, score (+ reason_item_id, reason)."""
    n, step = len(users), min(BATCH, block_rows(sc.n_target))
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        padded = torch.as_tensor(histories.padded(rows), dtype=torch.long)
        if padded.shape[1] == 0:
            padded = torch.full((len(rows), 1), -1, dtype=torch.long)
        batch_users = torch.as_tensor(users[rows], dtype=torch.long)
        with torch.no_grad():
            scores = model.score(Batch(batch_users, padded).to(model.device)).float().cpu()
        scores = _mask_known(scores, padded, sc.n_target)
        top = scores.topk(k)
        why = _reasons(sc, model, batch_users, padded, top.indices, top.values) if reasons else {}
        frame = _frame(sc, [user_ids[r] for r in rows], top.indices, top.values, why)
        if progress:
            progress({"stage": "recommending", "users": f"{rows[-1] + 1} of {n}"}, (rows[-1] + 1) / n)
        yield frame


def write(frames, out: Path) -> int:
    """Stream the frames into `out` (written under a temporary name, then renamed: never a half file); rows written.
    CSV text cells that a spreadsheet would run as formulas are neutralised."""
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    written, writer = 0, None
    try:
        for frame in frames:
            if out.suffix.lower() == ".csv":
                safe_table(frame).to_csv(partial, mode="a" if written else "w", header=not written, index=False)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                writer = writer or pq.ParquetWriter(partial, table.schema, compression="zstd")
                writer.write_table(table)
            written += len(frame)
        if writer:
            writer.close()
        os.replace(partial, out)
    except BaseException:
        if writer:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    return written


def _mask_known(scores: torch.Tensor, history: torch.Tensor, n_target: int) -> torch.Tensor:
    """Scores with the target items of each history at -inf."""
    rows, cols = torch.nonzero((history >= 0) & (history < n_target), as_tuple=True)
    scores[rows, history[rows, cols]] = -torch.inf
    return scores


def _frame(sc: Scenario, user_ids: list[str], items: torch.Tensor, scores: torch.Tensor, why: dict) -> pd.DataFrame:
    """One row per (user, rank); a user who knows nearly every target item gets fewer than k (never a known one)."""
    k = items.shape[1]
    chosen = sc.items.iloc[items.reshape(-1).numpy()]
    frame = pd.DataFrame({"user_id": np.repeat(user_ids, k), "rank": np.tile(np.arange(1, k + 1), len(user_ids)),
                          "item_id": chosen["item_id"].to_numpy(), "title": chosen["title"].to_numpy(),
                          "score": scores.reshape(-1).numpy(), **why})
    return frame[np.isfinite(frame["score"].to_numpy())]


def _reasons(sc: Scenario, model, users: torch.Tensor, history: torch.Tensor, items: torch.Tensor,
             scores: torch.Tensor) -> dict:
    """Per recommendation, the history item (of each row's REASON_ITEMS most recent) whose removal lowers its score
    most, re-scored with the model; '' where no removal lowers it."""
    lengths = (history >= 0).sum(1)
    first = (lengths - REASON_ITEMS).clamp(min=0)  # left-aligned histories: the most recent items are the last
    rows = torch.repeat_interleave(torch.arange(len(history)), lengths - first)
    positions = first[rows] + torch.arange(len(rows)) - (torch.cumsum(lengths - first, 0) - (lengths - first))[rows]
    drop = torch.full(items.shape + (history.shape[1],), -torch.inf)
    for chunk in torch.arange(len(rows)).split(PERTURBED_ROWS):
        r, p = rows[chunk], positions[chunk]
        keep = torch.arange(history.shape[1] - 1)[None, :].expand(len(r), -1)
        keep = keep + (keep >= p[:, None])  # every position but p, in order
        shorter = torch.cat([history[r].gather(1, keep), torch.full((len(r), 1), -1)], 1)
        with torch.no_grad():
            rescored = model.score(Batch(users[r], shorter).to(model.device)).float().cpu()
        drop[r, :, p] = scores[r] - rescored.gather(1, items[r])
    best = drop.max(2)
    reason = history.gather(1, best.indices.clamp(max=history.shape[1] - 1)).reshape(-1).numpy()
    found = (best.values > 0).reshape(-1).numpy()
    chosen = sc.items.iloc[np.where(found, reason, 0)]
    text = chosen["title"].astype(str) + " (" + chosen["domain"].astype(str) + ")"
    return {"reason_item_id": np.where(found, chosen["item_id"].to_numpy(), ""),
            "reason": np.where(found, text.to_numpy(), "")}
