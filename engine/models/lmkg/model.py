"""LMKG, the estimator: fit the network, fit the collaborative channel, calibrate on validation, score."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ... import text
from ...scenario import Batch
from ...sparse_rows import add_sparse
from ...train import AdamWithSparseTables, fit_module, sparse_tables_allowed
from .. import itemknn
from ..base import ItemSpace, Recommender
from ..settings import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, SEED, Range, Space
from ..content import Content
from . import calibration, collaborative, windows
from .explain_hooks import ExplanationHooks
from .network import Knowledge, LMKGNet

DEFAULTS = {"dim": 64, "layers": 2, "heads": 2, "max_history": 50, "dropout": 0.2, "negatives": 1024,
            "temperature": 0.1, "lr": 0.001, "weight_decay": 0.0, "epochs": 30, "patience": 3, "valid_every": 1000,
            "batch_size": 64, "seed": 0, "text_dim": 128, "whitening": 0.5, "target_view": 0.5, "use_text": True,
            "use_kg": True, "use_source": True, "use_cf": True, "cold_windows": True, "neighbours": None,
            "shrink": None, "new_items": None, "kg_hops": 2, "encoder": text.DEFAULT_ENCODER}
RANGES = {"dim": COUNT, "layers": COUNT, "heads": COUNT, "max_history": COUNT, "dropout": Range(0, 0.95),
          "negatives": COUNT, "temperature": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "epochs": COUNT,
          "patience": COUNT, "valid_every": COUNT, "batch_size": COUNT, "seed": SEED, "text_dim": COUNT,
          "whitening": FRACTION, "target_view": FRACTION, "neighbours": COUNT, "shrink": NON_NEGATIVE,
          "new_items": Range(-10, 10), "kg_hops": Range(1, 2)}
SEARCH = {"dim": Space(choices=(32, 64, 128)), "lr": Space(2e-4, 5e-3, log=True), "dropout": Space(0, 0.5),
          "temperature": Space(0.03, 0.3, log=True), "weight_decay": Space(0, 0.1), "whitening": Space(0, 1),
          "target_view": Space(0, 1)}  # dim: multiples of the default heads
HELP = {
    "layers": "Transformer layers over the history", "heads": "attention heads; dim must be a multiple of them",
    "max_history": "most recent history items the network reads", "dropout": "dropout while the network trains",
    "negatives": "items sampled per batch as negatives of the softmax loss",
    "valid_every": "most training steps between two validations: a longer epoch is validated in equal parts (large "
                   "data), so early stopping's patience need not run whole epochs; at least an epoch's steps: once "
                   "an epoch",
    "temperature": "softmax temperature of the scores (smaller: sharper)",
    "weight_decay": "AdamW weight decay of the layers (the item and entity tables are updated lazily, undecayed)",
    "text_dim": "dimensions kept of the whitened text vectors the network's adapter reads",
    "whitening": "how strongly the sentence vectors are whitened for the adapter, 0 (raw) to 1 (fully)",
    "target_view": "share of training windows that show the target-domain history alone (the view scored for a "
                   "user who has one)",
    "use_text": "read the items' text vectors (off: the 'lmkg -text' ablation)",
    "use_kg": "read the items' knowledge-graph entities (off: 'lmkg -kg')",
    "use_source": "read source-domain histories (off: 'lmkg -source', target only)",
    "use_cf": "add the item co-occurrence channel (off: 'lmkg -cf', the network alone)",
    "cold_windows": "also train on source-only histories that predict a target item, like a cold user's case",
    "neighbours": "similar items the co-occurrence channel keeps per item; empty: chosen on validation (as itemknn)",
    "shrink": "damping of rare co-occurrences in the collaborative channel; empty: chosen on validation (as itemknn)",
    "new_items": "how far items nobody bought in training are moved up (or down, below 0) in every list, in standard "
                 "deviations of the network's scores; empty: chosen on validation for accuracy. Set it to give new "
                 "items (a launch) more exposure; everything else stays as validation chose it, and the new, tail "
                 "and head buckets show the cost. Changeable on a trained run (`python -m engine derive`)",
    "kg_hops": "how far entity links reach: 1, an item's own attributes; 2, also what those link to",
}
CALIBRATION_KEYS = {False: "calibration.network", True: "calibration.cf"}  # use_cf -> its calibration's weights key


class LMKG(ExplanationHooks, ItemSpace, Recommender):
    name = "lmkg"
    description = "CrossLens: item text (MiniLM) + knowledge graph + cross-domain Transformer + co-occurrence"
    uses_history = True
    defaults = DEFAULTS
    ranges = RANGES
    search = SEARCH
    help = HELP
    post_training = ("use_cf", "new_items")  # the collaborative channel is fitted and calibrated after the network;
    # new_items only replaces a calibrated offset

    def __init__(self, **params):
        super().__init__(**params)
        dim, heads = self.params["dim"], self.params["heads"]
        if dim % heads:
            raise ValueError(f"lmkg setting dim ({dim}) must be a multiple of heads ({heads}): each attention head "
                             f"reads an equal share of the vector")

    def _semantic_model(self) -> Content:
        """The frozen-text channel: engine.models.content in the whitened sentence space (its entity part only
        with the knowledge graph). The network's adapter learns to tell known items apart; this channel keeps
        the encoder's own notion of similar text, which is what an item nobody bought can be found by."""
        return Content(encoder=self.params["encoder"], **({} if self.params["use_kg"] else {"entity_weight": 0.0}))

    # ---- fitting -----------------------------------------------------------------------------------------------
    def _net(self, scenario, text_vectors, fit_whitening: bool = True):
        p = self.params
        item_domain = torch.as_tensor(scenario.items["domain"].map({d: i for i, d in enumerate(scenario.domains)})
                                      .to_numpy(), dtype=torch.long)
        known = torch.zeros(scenario.n_items, dtype=torch.bool)
        known[torch.as_tensor(scenario.train["item"].unique())] = True
        knowledge, sparse = None, sparse_tables_allowed()
        if p["use_kg"]:
            ent = scenario.item_graph(p["kg_hops"])
            rel_codes, relations = pd.factorize(ent["relation"])
            ent_codes, entities = pd.factorize(ent["entity"])
            knowledge = Knowledge(ent["item"].to_numpy(), rel_codes, ent_codes, relations, entities, scenario.n_items,
                                  p["dim"], sparse)
        return LMKGNet(p, text_vectors, item_domain, known, knowledge, len(scenario.domains), fit_whitening,
                       sparse).to(self.device)

    def _text(self, scenario, progress=None):
        if not self.params["use_text"]:
            return torch.zeros(scenario.n_items, 1)
        report = None if progress is None else (
            lambda done, total: progress({"stage": "embedding item texts", "texts": f"{done}/{total}"}, done / total))
        return torch.as_tensor(scenario.item_text_vectors(self.params["encoder"], progress=report), dtype=torch.float32)

    def _reset(self, scenario):
        self.n_target_, self.target_items_ = scenario.n_target, None
        self.cf_, self.semantic_ = None, None
        self.calibration_ = {}  # use_cf -> its calibration; until calibrated, the network as trained

    def fit(self, scenario, progress=None):
        self._seed()
        p = self.params
        self.net_ = self._net(scenario, self._text(scenario, progress))
        self._reset(scenario)
        views = windows.Windows(scenario, p["max_history"], p["use_source"], p["cold_windows"], p["target_view"])
        # Negatives come from the items with training interactions only: a new item was not rejected, it was not
        # there yet, and as a negative of every step it would teach the content path that new means unwanted.
        known = self.net_.known.cpu().numpy()
        pools = [np.flatnonzero(known[lo:hi]) + lo for lo, hi in (scenario.domain_range[d] for d in scenario.domains)]

        def epoch(rng):
            for rows in windows.batches(views.sample(rng), p["batch_size"], rng, self.device):
                negatives = np.concatenate([pool[rng.integers(len(pool), size=p["negatives"])] for pool in pools
                                            if len(pool)])
                yield rows, torch.as_tensor(negatives, device=self.device)

        self.log_ = fit_module(self.net_, epoch, self, scenario, p, progress,
                               optimiser=AdamWithSparseTables(self.net_, p["lr"], p["weight_decay"]))
        self.net_.eval()  # drops item vectors computed before the best epoch's weights were restored
        self.target_items_ = None
        if p["use_text"]:
            self.semantic_ = self._semantic_model().fit(scenario)
        if progress:
            progress({"stage": "calibrating on validation"}, 1.0)
        self._calibrate(scenario, entities=True)
        return self

    def _calibrate(self, scenario, entities: bool = False):
        """Calibrate for the current use_cf (fitting the collaborative channel first if it is used and missing):
        after fit (where the text channel's entity weights are chosen too), and in load_state when api.derive
        switched use_cf on a trained run."""
        use_cf = bool(self.params["use_cf"])
        if use_cf and self.cf_ is None:
            self.cf_, _ = itemknn.choose_similarity(scenario, self.params["neighbours"], self.params["shrink"])
        if use_cf not in self.calibration_:
            self.calibration_[use_cf] = calibration.calibrate(self, scenario, use_cf=use_cf, entities=entities)

    # ---- scoring -----------------------------------------------------------------------------------------------
    def prepare(self):
        """The target items' (normalised) vectors, biases and moments, shared by every batch of an evaluation;
        computed once while the weights stay as they are (the network drops its item table when it trains); and the
        frozen-text channel's whitened vectors, here rather than in a first score (a loaded run serves threads)."""
        if self.semantic_ is not None:
            self.semantic_.prepare()
        net = self.net_
        if self.target_items_ is not None and net.item_table is not None:
            return
        net.freeze_items()
        n = self.n_target_
        self.target_items_ = F.normalize(net.item_table[:n], dim=-1)
        self.target_bias_ = net.item_bias[:n]
        self.new_mask_ = (~net.known[:n]).float()  # 1 on never-bought items: the offset is one fused multiply-add
        v, b = self.target_items_.double(), self.target_bias_.double()
        self.moments_ = (v.mean(0), v.T @ v / len(v), v.T @ b / len(v), b.mean(), (b * b).mean())
        self.joint_ = {}  # per whitening power of the text channel: [items | bias | the channel's targets]
        if self.semantic_ is not None:
            for power in {c["power"] for c in self.semantic_.chosen_.values()}:
                joint = torch.cat([self.target_items_, self.target_bias_[:, None], self.semantic_.targets(power)], 1)
                self.semantic_.keep_targets(power, joint[:, self.params["dim"] + 1:])
                self.joint_[power] = joint

    @torch.no_grad()  # writes into buffers (out=), which autograd refuses; nothing differentiates scores
    def score(self, batch, out=None):
        history = self.visible(batch.history.to(self.device))
        gate, weight, offset, semantic, text_view = self._settings(history)
        mixed, target = self.views(history, gate)
        cf = self.cf_rows(history) if self.cf_ is not None and self.params["use_cf"] else None
        if self.semantic_ is not None and semantic.any():
            users = self._gated(mixed, target, gate)
            std = self._network_std(users)
            scores = self._joint_scores(users, self.text_history(history, text_view > 0), semantic.to(std) * std, out)
        else:
            scores, std = self.network_scores(mixed, target, gate, out)
        return self.add_channels(scores, std, cf, None, weight, offset, semantic)

    def _joint_scores(self, users, text_history, scale, out=None) -> torch.Tensor:
        """The network's scores plus scale[:, None] times the frozen-text channel's, in one product per segment of
        the text channel ([users / T | 1 | the channel's users] against joint_): one pass over the (batch,
        n_target) block instead of two."""
        device = users.device
        out = torch.empty(len(users), self.n_target_, device=device) if out is None else out
        for rows, power, text_users, rare in self.semantic_.terms(text_history):
            rows = rows.to(device)
            left = torch.cat([users[rows] / self.params["temperature"], torch.ones(len(text_users), 1, device=device),
                              text_users * scale[rows, None]], 1)
            block = out if bool(rows.all()) else torch.empty(len(left), self.n_target_, device=device)
            torch.mm(left, self.joint_[power][:, : left.shape[1]].T, out=block)
            if rare is not None:
                add_sparse(block, rare, scale[rows])
            if block is not out:
                out[rows] = block
        return out

    def visible(self, history):
        """The (left-aligned, -1 padded) histories as the network sees them: target items only without use_source,
        each cut to its max_history most recent items."""
        if not self.params["use_source"]:
            history = windows.target_only(history, self.n_target_)
        return windows.most_recent(history, self.params["max_history"])

    def views(self, history, gate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised user vectors from each (visible) history and from its target items alone. Given the rows'
        gates, a view a row gives no weight to is not computed (left at zero)."""
        if self.target_items_ is None:
            self.prepare()
        if not self.params["use_source"]:
            mixed = F.normalize(self._user_rows(history), dim=-1)
            return mixed, mixed
        gate = torch.full((len(history),), 0.5) if gate is None else gate.cpu()
        mixed = torch.zeros(len(history), self.params["dim"], device=history.device)
        target = torch.zeros_like(mixed)
        for out, rows, rows_history in ((mixed, gate < 1, history),
                                        (target, gate > 0, windows.target_only(history, self.n_target_))):
            rows = rows.to(history.device)
            if rows.any():
                out[rows] = F.normalize(self._user_rows(rows_history[rows]), dim=-1)
        return mixed, target

    def cf_rows(self, history):
        return collaborative.unit_rows(history, self.cf_)

    def semantic_rows(self, history, target_only: torch.Tensor | None = None):
        """(batch, n_target) the frozen-text channel's scores of the (visible) histories, the rows where
        target_only is True from their target items alone; None without the channel."""
        if self.semantic_ is None:
            return None
        return self.semantic_.score(Batch(torch.zeros(len(history), dtype=torch.long),
                                          self.text_history(history, target_only))).to(self.device)

    def text_history(self, history, target_only: torch.Tensor | None = None) -> torch.Tensor:
        """(on the CPU) the histories the frozen-text channel reads: the rows where target_only is True cut to their
        target items."""
        if target_only is not None and target_only.any():
            history = torch.where(target_only.to(history.device)[:, None], windows.target_only(history, self.n_target_),
                                  history)
        return history.cpu()

    def _settings(self, history) -> tuple[torch.Tensor, ...]:
        """Per row: the calibrated gate, cf weight, new-item offset (new_items instead, when set), text-channel
        weight and text view of its segment (cold: no target history)."""
        cold = ~((history >= 0) & (history < self.n_target_)).any(1)
        table = self.calibration_.get(self.cf_ is not None and self.params["use_cf"])
        if table is None:  # training: the network as it is
            table = calibration.neutral()
        elif self.params["new_items"] is not None:  # the analyst's offset; all else as validation chose
            table = table.clone()
            table[:, calibration.COLUMNS.index("new")] = self.params["new_items"]
        table = table[cold.long().cpu()]
        return tuple(table[:, i] for i in range(table.shape[1]))

    def network_scores(self, mixed, target, gate, out=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, n_target) the network's scores of the gated user vectors (into `out` if given), and (batch,)
        their standard deviation over the target items: the unit every other channel is added in."""
        users = self._gated(mixed, target, gate)
        scores = torch.addmm(self.target_bias_, users, self.target_items_.T, alpha=1 / self.params["temperature"],
                             out=out)
        return scores, self._network_std(users)

    @staticmethod
    def _gated(mixed, target, gate) -> torch.Tensor:
        """The unit user vectors scored: each row's views mixed by its gate."""
        gate = gate.to(mixed)[:, None]
        return F.normalize((1 - gate) * mixed + gate * target, dim=-1)

    def add_channels(self, scores, std, cf, semantic, weight, offset, semantic_weight) -> torch.Tensor:
        """scores (in place) + offset * std on never-bought items + weight * std * cf + semantic_weight * std *
        semantic; a channel whose weights are all 0 is skipped."""
        if offset.any():
            scores.addcmul_((offset.to(std) * std)[:, None], self.new_mask_)
        if cf is not None and weight.any():
            add_sparse(scores, cf, weight.to(std) * std)
        if semantic is not None and semantic_weight.any():
            scores.addcmul_((semantic_weight.to(std) * std)[:, None], semantic)
        return scores

    def _network_std(self, users: torch.Tensor) -> torch.Tensor:
        """Per row, the std of the network scores users @ items.T / T + bias over all target items, from the
        items' first and second moments (d x d): exact, without another pass over the (batch, n_target) scores."""
        mean_v, gram, cross, mean_b, mean_b2 = self.moments_
        a = users.double() / self.params["temperature"]
        mean = a @ mean_v + mean_b
        square = ((a @ gram) * a).sum(1) + 2 * (a @ cross) + mean_b2
        n = self.n_target_
        return ((square - mean ** 2).clamp(min=0) * n / max(n - 1, 1)).sqrt().float()

    def _user_rows(self, history):
        """Unnormalised target-domain user vectors from (visible) histories."""
        lengths = (history >= 0).sum(1)
        users = torch.empty(len(history), self.params["dim"], device=history.device)
        for rows in torch.argsort(lengths).split(128):  # similar lengths together, each chunk cut to its longest
            users[rows] = self.net_.user_vectors(history[rows, : max(int(lengths[rows].max()), 1)], 0)
        return users

    def item_vectors(self):
        self.net_.freeze_items()
        return F.normalize(self.net_.item_table, dim=-1)

    @torch.no_grad()
    def user_vectors(self, batch):
        """(batch, dim) the network's target-domain user vectors (mixed view, before normalisation)."""
        if self.target_items_ is None:
            self.prepare()
        return self._user_rows(self.visible(batch.history.to(self.device)))

    # ---- state -------------------------------------------------------------------------------------------------
    def state(self):
        tensors = dict(self.net_.state_dict())
        tensors.update({CALIBRATION_KEYS[k]: v for k, v in self.calibration_.items()})
        if self.cf_ is not None:
            tensors.update(itemknn.similarity_state(self.cf_, "cf."))
        if self.semantic_ is not None:
            tensors.update({f"semantic.{k}": v for k, v in self.semantic_.state().items()})
        return tensors

    def load_state(self, scenario, tensors):
        # text vectors come from the cache, not the weights; the whitening fitted on them does come from the weights
        self.net_ = self._net(scenario, self._text(scenario), fit_whitening=False)
        self.net_.load_state_dict({k: v for k, v in tensors.items()
                                   if not k.startswith(("cf.", "calibration.", "semantic."))})
        self.net_.eval()
        self._reset(scenario)
        for use_cf, key in CALIBRATION_KEYS.items():
            if key in tensors:
                self.calibration_[use_cf] = calibration.completed(tensors[key])
        if self.params["use_cf"] and any(k.startswith("cf.") for k in tensors):
            self.cf_ = itemknn.similarity_from_state(tensors, "cf.")
        if self.params["use_text"]:
            self.semantic_ = self._semantic_model().load_state(
                scenario, {k.removeprefix("semantic."): v for k, v in tensors.items() if k.startswith("semantic.")})
        self._calibrate(scenario)  # a no-op unless api.derive switched use_cf
        return self
