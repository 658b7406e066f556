"""LMKG's training windows, and the history operations scoring shares with them.

Three kinds of window, each "items in time order, every position predicting the next":
- mixed: a user's training interactions of all domains;
- target-only: the same user's target-domain interactions alone. Training on both views lets one network read a
  warm user with or without their source history, so scoring can choose (on validation) how much the source may
  say: the source history must never drown the target signal (negative transfer);
- cold start: a user's most recent source items followed by one of their target items, the cold-start task itself.
"""
from __future__ import annotations

import numpy as np
import torch


def training_sequences(scenario, length: int, use_source: bool) -> np.ndarray:
    """Each user's training interactions (all domains, or the target only) in time order, cut into windows of
    `length` items (-1 padded at the end); long histories give several windows."""
    t = scenario.train if use_source else scenario.train[scenario.train["domain"] == 0]
    items, users = t["item"].to_numpy(), t["user"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    windows = []
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        for hi in range(e, s + 1, -(length - 1)):  # windows overlap by one item so every transition is learned
            lo = max(s, hi - length)
            w = np.full(length, -1)
            w[: hi - lo] = items[lo:hi]
            windows.append(w)
            if lo == s:
                break
    return np.stack(windows) if windows else np.zeros((0, length), dtype=np.int64)


def cold_start_windows(scenario, max_history: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """For every training user with items in the target and in a source: their most recent source items (rows
    of max_history, -1 padded) and all their target items. A window "source items -> one of the user's target
    items" is the cold-start task itself; mixed-domain windows teach it only where a user's first target item
    happens to follow source items."""
    t = scenario.train
    both = np.intersect1d(t.loc[t["domain"] == 0, "user"].unique(), t.loc[t["domain"] != 0, "user"].unique())
    t = t[t["user"].isin(both)]
    source = {u: g.to_numpy()[-max_history:] for u, g in t[t["domain"] != 0].groupby("user")["item"]}
    target = {u: g.to_numpy() for u, g in t[t["domain"] == 0].groupby("user")["item"]}
    prefixes = np.full((len(both), max_history), -1, np.int64)
    for row, u in enumerate(both):
        prefixes[row, : len(source[u])] = source[u]
    return prefixes, [target[u] for u in both]


def with_one_of(prefixes: np.ndarray, targets: list[np.ndarray], rng) -> np.ndarray:
    """Each prefix followed by one of its user's target items, drawn anew each epoch."""
    windows = np.full((len(prefixes), prefixes.shape[1] + 1), -1, np.int64)
    windows[:, :-1] = prefixes
    lengths = (prefixes >= 0).sum(1)
    windows[np.arange(len(prefixes)), lengths] = [t[rng.integers(len(t))] for t in targets]
    return windows


class Windows:
    """An epoch's training windows: every mixed window, or in its place (with probability `target_view`) the
    user's target-only windows, plus the cold-start windows with a fresh target item each epoch."""

    def __init__(self, scenario, max_history: int, use_source: bool, cold_windows: bool, target_view: float):
        length = max_history + 1
        self.target_only = training_sequences(scenario, length, False)
        self.mixed = training_sequences(scenario, length, True) if use_source else self.target_only[:0]
        self.target_view = target_view if use_source else 1.0
        self.prefixes, self.targets = cold_start_windows(scenario, max_history) if use_source and cold_windows \
            else (np.zeros((0, max_history), np.int64), [])

    def sample(self, rng) -> np.ndarray:
        """One epoch's windows. The view is drawn per window: each mixed window is kept with probability
        1 - target_view and each target-only window with probability target_view, so in expectation every
        transition is trained about once per epoch."""
        mixed = self.mixed[rng.random(len(self.mixed)) >= self.target_view]
        target = self.target_only[rng.random(len(self.target_only)) < self.target_view]
        return np.concatenate([mixed, target, with_one_of(self.prefixes, self.targets, rng)])


def batches(windows: np.ndarray, batch_size: int, rng, device):
    """Windows of similar length share a batch (cut to its longest row): far less padding to encode."""
    seqs = torch.as_tensor(windows, device=device)
    lengths = (windows >= 0).sum(1)
    order = np.lexsort((rng.random(len(lengths)), lengths))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for i in rng.permutation(len(chunks)):
        idx = chunks[i]
        yield seqs[torch.as_tensor(idx, device=device), : int(lengths[idx].max())]


def left_align(history: torch.Tensor) -> torch.Tensor:
    """Move the valid (>= 0) entries of each row to the front, keeping their order."""
    order = torch.argsort((history < 0).to(torch.int8), dim=1, stable=True)
    return torch.gather(history, 1, order)


def target_only(history: torch.Tensor, n_target: int) -> torch.Tensor:
    """The (left-aligned, -1 padded) histories with their source items removed."""
    return left_align(torch.where(history < n_target, history, torch.full_like(history, -1)))


def most_recent(history: torch.Tensor, n: int) -> torch.Tensor:
    """The last n items of each left-aligned, -1 padded row, still left-aligned."""
    lengths = (history >= 0).sum(1, keepdim=True)
    start = (lengths - n).clamp(min=0)
    idx = start + torch.arange(min(n, history.shape[1]), device=history.device)
    return torch.where(idx < lengths, torch.gather(history, 1, idx.clamp(max=history.shape[1] - 1)), -1)
