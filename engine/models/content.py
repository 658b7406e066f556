"""Content-based baseline: the user's history items' frozen text vectors (and attribute entities) against each
target item. Nothing is learned beyond the cached text embeddings and three settings chosen on validation.

A user's profile is the recency-weighted mean of their history items' vectors, any domain (the most recent item
weighs 1, the one before it `decay`, then decay^2, ...), in two spaces:
- text: each item's sentence-encoder vector (engine.text, cached), centred and whitened over the scenario's whole
  item table (engine.text_space with `power`: raw sentence vectors all point one way, so their cosines say
  little). One space for every domain: source items speak for cold users, and an item nobody bought scores like
  any other;
- entities: the item's attribute entities (category levels, brand, ...) and what uploaded knowledge-graph triples
  link it to (engine.kg.item_graph, one hop), over all domains, IDF-weighted and L2-normalised. Absent when the
  items have neither.
score(user, item) = cos(text profile, text_item) + entity_weight * cos(entity profile, entities_item).

A setting left unset (None) is chosen by NDCG@10 on the validation cases (at most MAX_VALID_CASES of them),
separately for users with target history (warm) and without (cold), over the grid POWERS x DECAYS x
ENTITY_WEIGHTS (ties: the earlier candidate).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse

from .. import text
from ..evaluate import block_rows, mask_known, ndcg_sum
from ..scenario import CASE_SEGMENTS
from ..sparse_rows import add_sparse, l2_normalised, product
from ..text_space import apply_whitening, fit_whitening
from .base import Explainable, ItemSpace, Recommender
from .settings import FRACTION, NON_NEGATIVE, Range

SETTINGS = ("power", "decay", "entity_weight")
POWERS = (0.5, 0.0, 1.0)                 # whitening: 0 only centres, 1 whitens fully
DECAYS = (0.9, 1.0, 0.7)                 # 1: every history item counts the same
ENTITY_WEIGHTS = (0.5, 0.0, 0.25, 1.0)
SHARED_ENTITIES = 64        # the entities most target items have: scored as a dense block
MAX_VALID_CASES = 3072      # per segment: a seeded subset of larger validation sets keeps fit() fast


class Content(ItemSpace, Explainable, Recommender):
    name = "content"
    description = "frozen item text (and attribute entities) of the history against each item; no training"
    uses_history = True
    defaults = {"power": None, "decay": None, "entity_weight": None, "encoder": text.DEFAULT_ENCODER}
    ranges = {"power": FRACTION, "decay": Range(0, 1, above=True), "entity_weight": NON_NEGATIVE}
    help = {"power": "how strongly the sentence vectors are whitened, 0 (raw) to 1 (fully); empty: chosen on "
                     "validation",
            "decay": "weight of each older history item relative to the next one (1: all equal); empty: chosen on "
                     "validation",
            "entity_weight": "weight of the attribute match (categories, brand) beside the text match; empty: chosen "
                             "on validation"}

    def fit(self, scenario, progress=None):
        self._build(scenario, progress)
        self.chosen_, self.valid_ndcg_ = {}, {}
        for segment in CASE_SEGMENTS:
            self.chosen_[segment], self.valid_ndcg_[segment] = self._choose(scenario, segment)
        self._keep_chosen_powers()
        if progress:
            progress({"stage": "settings chosen on validation",
                      **{f"{s} {k}": v for s, c in self.chosen_.items() for k, v in c.items()},
                      **{f"{s} valid_ndcg@10": v for s, v in self.valid_ndcg_.items()}}, 1.0)
        return self

    def _build(self, scenario, progress=None):
        """What fit and load_state share: the raw text vectors (from the cache) and the entity matrix."""
        report = None if progress is None else (
            lambda done, total: progress({"stage": "embedding item texts", "texts": f"{done}/{total}"}, done / total))
        self.raw_text_ = scenario.item_text_vectors(self.params["encoder"], progress=report)
        self.n_target_ = scenario.n_target
        self._transforms, self._whitened = {}, {}  # per power: (mean, projection), then the whitened vectors
        self.entities_ = entity_matrix(scenario.item_graph(1), len(scenario.items), self.n_target_)
        if self.entities_ is not None:  # (entities x target items): the widely shared ones dense, the rest sparse
            targets = self.entities_[: self.n_target_].T
            self.shared_targets_ = torch.from_numpy(targets[:SHARED_ENTITIES].toarray()).to(self.device)
            self.rare_targets_ = targets[SHARED_ENTITIES:].tocsc()

    # ---- choosing the settings on validation --------------------------------------------------------------------
    def _candidates(self, setting: str) -> tuple:
        if self.params[setting] is not None:
            return (float(self.params[setting]),)
        if setting == "entity_weight" and self.entities_ is None:
            return (0.0,)
        return {"power": POWERS, "decay": DECAYS, "entity_weight": ENTITY_WEIGHTS}[setting]

    def entity_weights(self) -> tuple:
        """The entity weights this channel may take: the grid, or the one it was given (0 without entities)."""
        return self._candidates("entity_weight")

    def _choose(self, scenario, segment: str) -> tuple[dict, float]:
        """The grid point with the best NDCG@10 on the segment's validation cases (validation_cases), and that
        NDCG@10."""
        cases = validation_cases(scenario, segment)
        grid = list(itertools.product(*(self._candidates(s) for s in SETTINGS)))
        totals = dict.fromkeys(grid, 0.0)
        with torch.no_grad():
            step = block_rows(self.n_target_)
            for lo in range(0, len(cases), step):
                rows = np.arange(lo, min(lo + step, len(cases)))
                history = scenario.batch(cases, rows).history
                scores = torch.empty(len(rows), self.n_target_, device=self.device)  # reused: no page faults
                for decay in self._candidates("decay"):
                    weights = self._weights(history, decay)
                    entity = self._entity_scores(weights) if self.entities_ is not None else None
                    for power in self._candidates("power"):
                        text_scores = self._text_scores(weights, power)
                        for w in self._candidates("entity_weight"):
                            _combine(text_scores, entity, w, out=scores)
                            totals[(power, decay, w)] += ndcg_sum(mask_known(scores, cases, rows), cases, rows)
        best = max(grid, key=totals.get)  # the first of equals: candidates are listed most plausible first
        return dict(zip(SETTINGS, best)), totals[best] / max(len(cases), 1)

    def _keep_chosen_powers(self) -> None:
        """Free the whitened vectors of the powers no segment chose."""
        chosen = {c["power"] for c in self.chosen_.values()}
        self._transforms = {p: t for p, t in self._transforms.items() if p in chosen}
        self._whitened = {p: v for p, v in self._whitened.items() if p in chosen}

    # ---- scoring --------------------------------------------------------------------------------------------------
    def prepare(self):
        """The whitened item vectors of the chosen powers (the target block on the model's device)."""
        for chosen in self.chosen_.values():
            self._vectors(chosen["power"])

    def score(self, batch, out=None):
        history = batch.history
        out = torch.zeros(len(history), self.n_target_, device=self.device) if out is None else out.zero_()
        return self.add_scores(out, history)

    def add_scores(self, out: torch.Tensor, history: torch.Tensor, scale: torch.Tensor | None = None,
                   items=slice(None)) -> torch.Tensor:
        """out += scale[:, None] * the scores of the target items `items` (out: (batch, len(items))), in place and
        without a (batch, items) temporary when the batch is one segment (most batches): the text and the widely
        shared entities are one product accumulated into out, the rare entities a sparse add (lmkg multiplies the
        same parts, terms(), in its own product)."""
        scale = torch.ones(len(history), device=self.device) if scale is None else scale.to(self.device)
        segments = self._segments(history)
        if len(segments) == 1:
            return self._accumulate(out, history, scale, items, **self.chosen_[segments[0][0]])
        for segment, rows in segments:
            part = torch.zeros(int(rows.sum()), out.shape[1], device=self.device)
            self._accumulate(part, history[rows], scale[rows.to(self.device)], items, **self.chosen_[segment])
            out.index_add_(0, torch.nonzero(rows).squeeze(1).to(self.device), part)
        return out

    def score_perturbed(self, history, item, keep_history, keep_entities=None):
        """(P,) scores of target item `item` from P copies of one history (L,), copy p keeping the positions where
        keep_history[p] is True (scored as score() scores the shortened history: recency and warm/cold follow what
        is kept). The item's entities are not separate inputs: keep_entities must have 0 columns."""
        if keep_entities is not None and keep_entities.shape[1]:
            raise ValueError("content has no entity slots to keep or remove: an item's entities come with it")
        if not 0 <= item < self.n_target_:
            raise ValueError(f"item {item} is not a target item (0..{self.n_target_ - 1})")
        rows = torch.where(keep_history.cpu(), history.cpu()[None, :], -1)
        return self.add_scores(torch.zeros(len(rows), 1, device=self.device), rows, items=[item])[:, 0]

    def _segments(self, history: torch.Tensor):
        """(segment, row mask) of the histories: cold rows hold no target item."""
        cold = ~((history >= 0) & (history < self.n_target_)).any(1)
        return [(s, rows) for s, rows in (("warm", ~cold), ("cold", cold)) if rows.any()]

    def _accumulate(self, out, history, scale, items, power: float, decay: float, entity_weight: float):
        """out += scale[:, None] * (text cosine + entity_weight * entity cosine) of the target items `items`, with
        these settings."""
        users, rare = self._profile(history, power, decay, entity_weight, items)
        if rare is not None:
            add_sparse(out, rare, scale)
        return out.addmm_(users * scale[:, None], self.targets(power)[items, : users.shape[1]].T)

    def terms(self, history: torch.Tensor) -> list[tuple[torch.Tensor, float, torch.Tensor, sparse.csr_matrix | None]]:
        """add_scores's parts, per segment of the histories: (rows, power, users, rare) with the segment's settings.
        users @ targets(power)[:, :users.shape[1]].T is the text and shared-entity part of those rows' scores, rare
        (None without entities) the rare entities' part, a sparse (rows, n_target) matrix. For a caller that
        multiplies the dense part in a product of its own (lmkg: with its network's, one pass over the block)."""
        return [(rows, c["power"], *self._profile(history[rows], c["power"], c["decay"], c["entity_weight"]))
                for segment, rows in self._segments(history) for c in [self.chosen_[segment]]]

    def _profile(self, history, power: float, decay: float, entity_weight: float, items=slice(None)):
        """(users, rare) of the histories with these settings, as terms() gives them (rare: of the items `items`)."""
        weights = self._weights(history, decay)
        users = self._text_profile(weights, power)
        if self.entities_ is None or not entity_weight:
            return users, None
        shared, rare = self._entity_profile(weights)
        rare = product(rare, self.rare_targets_[:, items])
        rare.data *= np.float32(entity_weight)
        return torch.cat([users, entity_weight * shared], 1), rare

    def targets(self, power: float) -> torch.Tensor:
        """(n_target, K) the target items' text vectors whitened with `power`, then (with entities) their shared
        entities: what the users of terms() multiply."""
        return self._vectors(power, with_shared=True)[1]

    def keep_targets(self, power: float, block: torch.Tensor) -> None:
        """From now on read targets(power) from `block`, a tensor equal to it (a view into a caller's wider matrix):
        one copy in memory."""
        self._whitened[power] = self._vectors(power)[0], block

    def _weights(self, history: torch.Tensor, decay: float) -> sparse.csr_matrix:
        """(batch, n_items) recency weights of each (-1 padded) history: decay^(how many kept items follow)."""
        h = history.cpu().numpy()
        kept = h >= 0
        age = np.cumsum(kept[:, ::-1], 1)[:, ::-1] - 1
        rows, cols = np.nonzero(kept)
        return sparse.csr_matrix((np.power(decay, age[rows, cols]).astype(np.float32), (rows, h[rows, cols])),
                                 shape=(len(h), len(self.raw_text_)))  # a repeated item adds up its weights

    def _text_profile(self, weights, power: float) -> torch.Tensor:
        """(batch, dim) the unit text profiles: their products with the whitened target vectors are the cosines."""
        return F.normalize(torch.from_numpy(np.asarray(weights @ self._vectors(power)[0])).to(self.device), dim=-1)

    def _entity_profile(self, weights) -> tuple[torch.Tensor, sparse.csr_matrix]:
        """The unit entity profiles, split where the target items' entities are: the few entities most target items
        share as a dense (batch, SHARED_ENTITIES) block (a sparse product there would fill every cell), the rest
        sparse (each reaches few items)."""
        profile = l2_normalised(weights @ self.entities_)
        return (torch.from_numpy(profile[:, :SHARED_ENTITIES].toarray()).to(self.device),
                profile[:, SHARED_ENTITIES:].tocsr())

    def _text_scores(self, weights, power: float) -> torch.Tensor:
        return self._text_profile(weights, power) @ self._vectors(power)[1].T

    def _entity_scores(self, weights) -> torch.Tensor:
        """Cosines of the entity profiles and the target items."""
        shared, rare = self._entity_profile(weights)
        return add_sparse(shared @ self.shared_targets_, product(rare, self.rare_targets_))

    def _vectors(self, power: float, with_shared: bool = False) -> tuple[np.ndarray, torch.Tensor]:
        """All items' text vectors whitened with `power` (numpy) and the target block (torch, on the device); with
        with_shared, the target items' shared entities beside it: the one matrix the text and shared-entity
        profiles are scored against together (the text block is a view of it, not a copy). The transform is fitted
        once and then kept (and saved): eigenvector signs may differ between machines."""
        if power not in self._whitened:
            if power not in self._transforms:
                self._transforms[power] = fit_whitening(self.raw_text_, power)
            vectors = apply_whitening(self.raw_text_, *self._transforms[power]).astype(np.float32, copy=False)
            targets = torch.from_numpy(vectors[: self.n_target_]).to(self.device)
            if self.entities_ is not None:
                targets = torch.cat([targets, self.shared_targets_.T], 1)
            self._whitened[power] = vectors, targets
        vectors, targets = self._whitened[power]
        return vectors, targets if with_shared else targets[:, : vectors.shape[1]]

    @torch.no_grad()
    def user_vectors(self, batch):
        """(batch, dim) each history's text profile, with its segment's settings (before normalisation)."""
        history = batch.history
        out = torch.zeros(len(history), self.raw_text_.shape[1], device=self.device)
        for segment, rows in self._segments(history):
            c = self.chosen_[segment]
            profile = self._weights(history[rows], c["decay"]) @ self._vectors(c["power"])[0]
            out[rows.to(self.device)] = torch.from_numpy(np.asarray(profile)).to(self.device)
        return out

    def item_vectors(self):
        """Every item's whitened text vector (the warm users' power): the space the embedding map shows."""
        return torch.from_numpy(self._vectors(self.chosen_["warm"]["power"])[0])

    # ---- saving -------------------------------------------------------------------------------------------------
    def state(self):
        """The chosen settings and each segment's whitening transform; the text vectors come back from the cache in
        load_state."""
        tensors = {"chosen": torch.tensor([[self.chosen_[s][k] for k in SETTINGS] for s in CASE_SEGMENTS],
                                          dtype=torch.float64),  # float64: 0.9 comes back as exactly 0.9
                   "valid_ndcg": torch.tensor([self.valid_ndcg_[s] for s in CASE_SEGMENTS], dtype=torch.float64)}
        for s in CASE_SEGMENTS:
            mean, projection = self._transforms[self.chosen_[s]["power"]]
            # copies: segments with the same power must not share memory (safetensors refuses that)
            tensors[f"whitening.{s}.mean"], tensors[f"whitening.{s}.projection"] = map(torch.tensor, (mean, projection))
        return tensors

    def load_state(self, scenario, tensors):
        self._build(scenario)
        self.chosen_ = {s: dict(zip(SETTINGS, map(float, row)))
                        for s, row in zip(CASE_SEGMENTS, tensors["chosen"].tolist())}
        self.valid_ndcg_ = dict(zip(CASE_SEGMENTS, map(float, tensors["valid_ndcg"].tolist())))
        for s in CASE_SEGMENTS:
            self._transforms[self.chosen_[s]["power"]] = (tensors[f"whitening.{s}.mean"].numpy(),
                                                          tensors[f"whitening.{s}.projection"].numpy())
        return self


def entity_matrix(ent: pd.DataFrame, n_items: int, n_target: int) -> sparse.csr_matrix | None:
    """(items x entities) IDF-weighted, row-normalised attribute entities (kg.item_entities) of all items, the
    entities most target items have first; None without any. An entity every item has weighs 0; a rare one (a
    brand) weighs most."""
    if ent.empty:
        return None
    codes, names = pd.factorize(ent["entity"])
    in_target = np.bincount(codes, weights=ent["item"].to_numpy() < n_target, minlength=len(names))
    column = np.empty(len(names), np.int64)
    column[np.argsort(-in_target, kind="stable")] = np.arange(len(names))
    codes = column[codes]  # column j: the entity with the j-th most target items
    idf = np.log(n_items / np.bincount(codes, minlength=len(names)))
    m = sparse.csr_matrix((idf[codes].astype(np.float32), (ent["item"].to_numpy(), codes)),
                          shape=(n_items, len(names)))
    return l2_normalised(m)


def validation_cases(scenario, segment: str):
    """The segment's validation cases (all of them when the segment has none), at most MAX_VALID_CASES of them
    (a subset seeded by the scenario's seed)."""
    cases = scenario.valid.subset(np.flatnonzero(scenario.valid.segment == segment))
    if len(cases) == 0:
        cases = scenario.valid
    return cases.at_most(MAX_VALID_CASES, scenario.spec["seed"])


def _combine(text_scores: torch.Tensor, entity_scores: torch.Tensor | None, weight: float,
             out: torch.Tensor) -> torch.Tensor:
    """out = text + weight * entities (into a block reused across the grid)."""
    if entity_scores is None or not weight:
        return out.copy_(text_scores)
    return torch.add(text_scores, entity_scores, alpha=weight, out=out)
