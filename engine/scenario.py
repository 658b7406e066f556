"""A cross-domain scenario: source domain(s) -> target domain, split into training data and test cases.

Protocol (seeded, no leakage):
- Overlapping users have interactions in the target and in a source. A `cold_fraction` of them (chosen by the
  seed) are cold-start users: all their target interactions are held out and form their relevant set; they are
  scored from their source history alone. Half of them validate, half test.
- Every other user with at least 3 target interactions is warm: leave-last-out in the target by timestamp (last =
  test, second last = validation). A case's history is all of the user's interactions, any domain, strictly
  before the case's timestamp (ties are not "before").
- Training data = every interaction that is not held out.

Items get one global index; the target domain's items come first (0..n_target-1, in a seeded order so score ties
are not broken by file order), then each source domain's items as one contiguous block.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from . import kg, text
from .errors import CrossLensError
from .store import Store

CASE_SEGMENTS = ("warm", "cold")  # a case's user has target history (warm) or none (cold)

MIN_WARM_TARGET = 3


@dataclass
class Ragged:
    """Variable-length rows (a history, a relevant set) as one flat array plus offsets."""
    indptr: np.ndarray
    values: np.ndarray

    @classmethod
    def from_groups(cls, group: np.ndarray, values: np.ndarray, n_groups: int) -> "Ragged":
        """Rows from (group, value) pairs already sorted by group."""
        counts = np.bincount(group, minlength=n_groups)
        return cls(np.concatenate([[0], np.cumsum(counts)]), np.asarray(values))

    def __len__(self):
        return len(self.indptr) - 1

    def __getitem__(self, i) -> np.ndarray:
        return self.values[self.indptr[i]:self.indptr[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def padded(self, rows: np.ndarray, fill: int = -1, max_len: int | None = None) -> np.ndarray:
        """Rows as a (len(rows), L) matrix, left-aligned; with max_len only the last max_len values of each row."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        if max_len is not None:
            starts = np.maximum(starts, ends - max_len)
        lengths = ends - starts
        out = np.full((len(rows), int(lengths.max(initial=0))), fill, dtype=self.values.dtype)
        mask = np.arange(out.shape[1]) < lengths[:, None]
        out[mask] = self.values[np.repeat(starts, lengths) + _ranges(lengths)]
        return out

    def take(self, rows: np.ndarray) -> "Ragged":
        lengths = self.lengths[rows]
        return Ragged(np.concatenate([[0], np.cumsum(lengths)]),
                      self.values[np.repeat(self.indptr[rows], lengths) + _ranges(lengths)])


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """[0..l0-1, 0..l1-1, ...] without a Python loop."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


@dataclass
class Cases:
    """Test or validation cases: who, what they saw before, what to find, what not to recommend."""
    user: np.ndarray          # global user index
    segment: np.ndarray       # one of CASE_SEGMENTS
    history: Ragged           # global item indices, oldest first
    relevant: Ragged          # target item indices
    exclude: Ragged           # target item indices masked from the ranking (known to the user)

    def __len__(self):
        return len(self.user)

    def subset(self, rows: np.ndarray) -> "Cases":
        return Cases(self.user[rows], self.segment[rows], self.history.take(rows), self.relevant.take(rows),
                     self.exclude.take(rows))

    def at_most(self, n: int, seed: int) -> "Cases":
        """These cases, or a seeded subset of n of them (in their order) when there are more: what a setting is
        chosen on, so that choosing costs the same at any data size."""
        if len(self) <= n:
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


@dataclass
class Batch:
    """What a model may see when it scores: users and their histories (global item index, -1 = padding)."""
    users: torch.Tensor
    history: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(self.users.to(device), self.history.to(device))


@dataclass
class Scenario:
    spec: dict
    domains: list[str]           # target first, then sources
    items: pd.DataFrame          # global item table: item_id, domain, title, attributes...
    domain_range: dict           # domain -> (start, end) in the global item index
    users: np.ndarray            # user_id per global user index
    train: pd.DataFrame          # user, item, domain (index into domains), timestamp; sorted by user then time
    valid: Cases
    test: Cases
    held_out: pd.DataFrame       # the validation and test interactions, columns as train's
    text_cache: Path | None = None  # the item-text embedding cache (Store.text_cache); None: the default workspace's
    triples: pd.DataFrame | None = None  # uploaded knowledge-graph triples: head, relation, tail, domain
    derived: dict = field(default_factory=dict, repr=False, compare=False)  # what item_* computed once

    @property
    def target(self) -> str:
        return self.domains[0]

    @property
    def n_target(self) -> int:
        return self.domain_range[self.target][1]

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def cases(self, split: str) -> Cases:
        return {"valid": self.valid, "test": self.test}[split]

    def train_matrix(self, domains: list[str] | None = None) -> sparse.csr_matrix:
        """Binary users x all-items matrix of training interactions (optionally of some domains only)."""
        t = self.train
        if domains is not None:
            t = t[t["domain"].isin([self.domains.index(d) for d in domains])]
        m = sparse.csr_matrix((np.ones(len(t), np.float32), (t["user"], t["item"])),
                              shape=(self.n_users, self.n_items))
        m.data[:] = 1.0  # repeated interactions count once
        return m

    def item_popularity(self) -> np.ndarray:
        """Distinct training users per target item."""
        m = self.train_matrix([self.target])[:, : self.n_target]
        return np.asarray((m > 0).sum(0)).ravel()

    def item_text_vectors(self, encoder: str, progress=None) -> np.ndarray:
        """(n_items, dim) sentence vectors of the items' texts (text.embed_items, through the workspace's cache),
        computed once per scenario: lmkg and the content model inside it read the same ones, seconds apart."""
        key = ("text", encoder)
        if key not in self.derived:
            self.derived[key] = text.embed_items(self.items, self.text_cache, encoder, progress=progress)[0]
        return self.derived[key]

    def item_entities(self) -> pd.DataFrame:
        """kg.item_entities of every item (global positions), computed once per scenario."""
        if "entities" not in self.derived:
            self.derived["entities"] = kg.item_entities(self.items)
        return self.derived["entities"]

    def item_graph(self, hops: int) -> pd.DataFrame:
        """kg.item_graph of every item: its attribute entities and what the uploaded triples link it to, computed
        once per scenario and hop count."""
        key = ("graph", hops)
        if key not in self.derived:
            self.derived[key] = kg.item_graph(self.items, self.triples, hops, self.item_entities())
        return self.derived[key]

    def item_features(self, domain: str | None = None) -> sparse.csr_matrix:
        """Binary items x attribute-entities matrix (categories at each level, brand, ...)."""
        start, end = self.domain_range[domain or self.target]
        ent = kg.item_entities(self.items.iloc[start:end].reset_index(drop=True))
        codes, _ = pd.factorize(ent["entity"])
        return sparse.csr_matrix((np.ones(len(ent), np.float32), (ent["item"], codes)),
                                 shape=(end - start, max(len(_), 1)))

    def batch(self, cases: Cases, rows: np.ndarray, max_history: int | None = None) -> Batch:
        return Batch(torch.as_tensor(cases.user[rows], dtype=torch.long),
                     torch.as_tensor(cases.history.padded(rows, max_len=max_history), dtype=torch.long))

    def user_index(self, user_id: str) -> int | None:
        hit = np.flatnonzero(self.users == user_id)
        return int(hit[0]) if len(hit) else None

    def user(self, user_id) -> int:
        """The index of a user the caller named; a readable error if they are not in this scenario."""
        u = self.user_index(str(user_id))
        if u is None:
            raise CrossLensError(f"user '{user_id}' is not in this scenario's domains ({', '.join(self.domains)}); "
                                 f"check the id.")
        return u

    def known_histories(self) -> tuple[np.ndarray, Ragged]:
        """(users, histories): every user's whole history here, training and held-out interactions of every
        domain, oldest first (the log's order: time, then domain, then file order; held-out rows are each user's
        latest target rows of their time)."""
        log = pd.concat([self.train, self.held_out]).sort_values(["user", "timestamp", "domain"], kind="stable")
        users, position = np.unique(log["user"].to_numpy(), return_inverse=True)
        return users, Ragged.from_groups(position, log["item"].to_numpy(), len(users))

    def without_test(self) -> "Scenario":
        """This scenario with its test cases and held-out rows sealed (Sealed): what a model is fitted on while its
        settings are chosen on validation (engine.tune), so that nothing in the choice can read the test split."""
        return replace(self, test=Sealed("the test cases"), held_out=Sealed("the held-out interactions"))

    def user_case(self, u: int) -> "UserCase":
        """What user u is scored from outside evaluation: their test case if they have one (so a held-out hit can
        be shown), else their whole training history, their known target items excluded."""
        rows = np.flatnonzero(self.test.user == u)
        if len(rows):
            r = rows[0]
            return UserCase(u, f"test case ({self.test.segment[r]})", np.asarray(self.test.history[r], np.int64),
                            self.test.exclude[r], self.test.relevant[r])
        history = self.train.loc[self.train["user"] == u, "item"].to_numpy().astype(np.int64)
        return UserCase(u, "training history", history, np.unique(history[history < self.n_target]),
                        np.zeros(0, np.int64))


class Sealed:
    """Stands in for test data while settings are chosen on validation: any use of it raises, so a leak of the
    test split into tuning fails loudly instead of flattering the result."""

    def __init__(self, what: str):
        self.what = what

    def __getattr__(self, name):
        if name.startswith("__"):  # copy and pickle probe for these; they are not reads of the data
            raise AttributeError(name)
        self._refuse()

    def __len__(self):
        self._refuse()

    def __getitem__(self, key):
        self._refuse()

    def __iter__(self):
        self._refuse()

    def _refuse(self):
        raise CrossLensError(f"{self.what} are sealed while settings are chosen on validation; the test split is "
                             f"read once, by the chosen settings' run.")


@dataclass
class UserCase:
    user: int
    basis: str
    history: np.ndarray   # global item indices, oldest first
    exclude: np.ndarray   # target items never recommended (known to the user)
    relevant: np.ndarray  # held-out target items (none outside a test case)


def scenario_spec(source: list[str], target: str, seed: int = 0, cold_fraction: float = 0.2,
                  versions: dict | None = None) -> dict:
    return {"source": sorted(source), "target": target, "seed": int(seed), "cold_fraction": float(cold_fraction),
            "versions": versions or {}}


def build(store: Store, spec: dict) -> Scenario:
    """Load the scenario's domains from the workspace and split them by the protocol above."""
    domains = [spec["target"], *spec["source"]]
    versions = spec.get("versions", {})  # the versions the spec was made on (kept while runs use them)
    tables = {d: tuple(store.load_table(d, t, versions.get(d)) for t in ("interactions", "items", "kg"))
              for d in domains}
    return split(tables, spec, text_cache=store.text_cache)


def split(tables: dict[str, tuple], spec: dict, text_cache: Path | None = None) -> Scenario:
    """Split in-memory domain tables {domain: (interactions, items[, triples])} by the protocol."""
    rng = np.random.default_rng(spec["seed"])
    domains = [spec["target"], *spec["source"]]
    if spec["target"] in spec["source"]:
        raise ValueError(f"target domain '{spec['target']}' is also a source; choose different domains")

    # Global item table: target block first (seeded order), then each source block.
    item_frames, ranges, start = [], {}, 0
    for d in domains:
        inter, items = tables[d][:2]
        if items is None:
            items = pd.DataFrame({"item_id": inter["item_id"].unique()})
            items["title"] = items["item_id"]
        items = items.copy()
        if d == spec["target"]:
            items = items.iloc[rng.permutation(len(items))]
        items.insert(1, "domain", d)
        ranges[d] = (start, start + len(items))
        start += len(items)
        item_frames.append(items)
    # All interactions with global indices, sorted by user, then time, then domain and file order (the order they
    # are concatenated in: a stable sort by user and time keeps it). Numbers only: moving the user id strings
    # through the sort, or pandas' sort by four columns, cost more and grew faster than the data.
    inter = [tables[d][0] for d in domains]
    users, user = _codes(pd.concat([t["user_id"] for t in inter], ignore_index=True))
    item = np.concatenate([_positions(f["item_id"], t["item_id"], d) + ranges[d][0]
                           for d, f, t in zip(domains, item_frames, inter)])
    domain = np.repeat(np.arange(len(domains), dtype=np.int8), [len(t) for t in inter])
    timestamp = np.concatenate([t["timestamp"].to_numpy(np.float64) for t in inter])
    order = np.lexsort((timestamp, user))
    log = pd.DataFrame({"domain": domain[order], "item": item[order], "timestamp": timestamp[order],
                        "user": user[order]})
    items = pd.concat(item_frames, ignore_index=True).fillna("")

    in_target = log["domain"] == 0
    target_users = np.unique(log.loc[in_target, "user"])
    source_users = np.unique(log.loc[~in_target, "user"])
    overlap = np.intersect1d(target_users, source_users)

    # Cold users: a seeded draw among overlapping users, ordered by user id so the draw doesn't depend on indexing.
    overlap = overlap[np.argsort(users[overlap], kind="stable")]
    n_cold = int(round(spec["cold_fraction"] * len(overlap)))
    cold = rng.permutation(overlap)[:n_cold]
    cold_valid, cold_test = np.sort(cold[: n_cold // 2]), np.sort(cold[n_cold // 2:])
    is_cold = np.zeros(len(users), bool)
    is_cold[cold] = True

    # Warm users: leave-last-out in the target.
    t = log[in_target & ~is_cold[log["user"]]]
    count = t.groupby("user").size()
    t = t[t["user"].isin(count.index[count >= MIN_WARM_TARGET])]
    rank_from_end = t.groupby("user").cumcount(ascending=False)
    test_rows, valid_rows = t[rank_from_end == 0], t[rank_from_end == 1]

    is_held_out = np.zeros(len(log), bool)
    is_held_out[test_rows.index] = True
    is_held_out[valid_rows.index] = True
    is_held_out[(in_target & is_cold[log["user"]]).to_numpy()] = True
    train = log.loc[~is_held_out, ["user", "item", "domain", "timestamp"]].reset_index(drop=True)
    held_out = log.loc[is_held_out, ["user", "item", "domain", "timestamp"]].reset_index(drop=True)

    target_train = train[train["domain"] == 0]
    valid = _cases(log, target_train, valid_rows, None, cold_valid, len(users))
    test = _cases(log, target_train, test_rows, valid_rows, cold_test, len(users))
    kg_frames = [t[2].assign(domain=d) for d, t in tables.items() if len(t) > 2 and t[2] is not None]
    triples = pd.concat(kg_frames, ignore_index=True) if kg_frames else None
    return Scenario(spec=spec, domains=domains, items=items, domain_range=ranges, users=users, train=train,
                    valid=valid, test=test, held_out=held_out, text_cache=text_cache, triples=triples)


def _positions(item_ids: pd.Series, wanted: pd.Series, domain: str) -> np.ndarray:
    """The position of each wanted id among a domain's item ids (ingest guarantees every one is there)."""
    found = pd.Index(item_ids).get_indexer(wanted)
    if (found < 0).any():
        raise ValueError(f"domain '{domain}': interactions name items its item table lacks, e.g. "
                         f"{wanted[found < 0].iloc[0]!r}; ingest the domain again")
    return found.astype(np.int64)


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(uniques, dtype=object), codes.astype(np.int64)


def _cases(log, target_train, warm_rows, known_rows, cold_users, n_users) -> Cases:
    """Warm cases (one per held-out row) followed by cold cases (one per cold user)."""
    warm_users = warm_rows["user"].to_numpy()
    cutoff = np.full(n_users, np.inf)
    cutoff[warm_users] = warm_rows["timestamp"].to_numpy()
    case_users = np.concatenate([warm_users, cold_users])
    case_of_user = np.full(n_users, -1)
    case_of_user[case_users] = np.arange(len(case_users))

    # History: warm = everything strictly before the cutoff; cold = their whole source history.
    mine = log[case_of_user[log["user"]] >= 0]
    keep = np.where(np.isinf(cutoff[mine["user"]]), mine["domain"] != 0, mine["timestamp"] < cutoff[mine["user"]])
    hist = mine[keep]
    hist_case = case_of_user[hist["user"]]
    order = np.argsort(hist_case, kind="stable")  # log is sorted by time within user
    history = Ragged.from_groups(hist_case[order], hist["item"].to_numpy()[order], len(case_users))

    # Relevant: the held-out item (warm) or every distinct target item of the user (cold).
    cold_target = log[(log["domain"] == 0) & np.isin(log["user"], cold_users)].drop_duplicates(["user", "item"])
    rel = pd.concat([pd.DataFrame({"case": case_of_user[warm_users], "item": warm_rows["item"].to_numpy()}),
                     pd.DataFrame({"case": case_of_user[cold_target["user"]], "item": cold_target["item"].to_numpy()})])
    rel = rel.sort_values("case", kind="stable")
    relevant = Ragged.from_groups(rel["case"].to_numpy(), rel["item"].to_numpy(), len(case_users))

    # Excluded: the user's target training items (plus the validation item when testing).
    known = [target_train[["user", "item"]]]
    if known_rows is not None:
        known.append(known_rows[["user", "item"]])
    known = pd.concat(known)
    known = known[case_of_user[known["user"]] >= 0].drop_duplicates()
    known_case = case_of_user[known["user"]]
    order = np.argsort(known_case, kind="stable")
    exclude = Ragged.from_groups(known_case[order], known["item"].to_numpy()[order], len(case_users))

    segment = np.array(["warm"] * len(warm_users) + ["cold"] * len(cold_users), dtype=object)
    return Cases(case_users, segment, history, relevant, exclude)
