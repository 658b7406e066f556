"""LMKG: the CrossLens model. Language-model item text + knowledge graph + cross-domain sequence learning.

Item i is represented as
    adapter(text_i) + knowledge_i + dropout(id_i)
- text_i: a frozen sentence encoder's embedding of the item's title and attributes (engine.text, cached);
- adapter: parametric whitening with a mixture of experts (UniSRec), so domains with different vocabularies
  meet in one space;
- knowledge_i: relation-aware attention over the item's knowledge-graph entities (category levels, brand, other
  attributes, uploaded triples); entities shared by domains bridge them;
- id_i: an ID embedding, dropped out in training so items with no interactions still get good vectors.
A user is a causal Transformer over their mixed-domain history (item + domain + position), read out for the
domain of the item to predict. Users with only source history get a target-domain vector this way (cold start).
Training: next-item prediction in every domain with sampled softmax (in-batch positives plus random negatives
of the predicted domain), early stopping on validation NDCG@10.

Beside the network, a collaborative channel adds the history's item-item co-occurrence (engine.models.itemknn,
all domains) to the standardised network score. The network generalises through text and knowledge; the
channel keeps the exact "bought X, then Y" evidence a 64-d vector blurs. Its weight, one for users with target
history and one for users without (cold), is chosen after training on the validation cases only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import kg, metrics, text
from ..evaluate import mask_known, top_and_hits
from ..train import fit_module
from . import itemknn
from .base import Recommender

DEFAULTS = {"dim": 64, "layers": 2, "heads": 2, "max_history": 50, "dropout": 0.2, "id_dropout": 0.5,
            "experts": 4, "negatives": 256, "temperature": 0.07, "lr": 0.0005, "weight_decay": 0.0,
            "epochs": 30, "patience": 3, "batch_size": 32, "seed": 0, "use_text": True, "use_kg": True,
            "use_id": True, "use_source": True, "use_cf": True, "cold_windows": True, "neighbours": 100, "kg_hops": 2,
            "encoder": text.DEFAULT_ENCODER}
CF_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # candidates, in units of the network score's std


class MoEAdapter(nn.Module):
    """Parametric whitening (x - b) W per expert, mixed by a softmax gate over the input (UniSRec)."""

    def __init__(self, in_dim: int, dim: int, experts: int, dropout: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(experts, in_dim))
        self.proj = nn.Parameter(torch.randn(experts, in_dim, dim) / in_dim ** 0.5)
        self.gate = nn.Linear(in_dim, experts)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(x)
        experts = torch.einsum("nei,eid->ned", x[:, None, :] - self.bias, self.proj)
        return (experts * F.softmax(self.gate(x), -1)[..., None]).sum(1)


class Knowledge(nn.Module):
    """An item's knowledge vector: attention over its (relation, entity) pairs, the relation shaping each entity."""

    def __init__(self, item: np.ndarray, relation: np.ndarray, entity: np.ndarray, n_items, n_relations,
                 n_entities, dim):
        super().__init__()
        self.entities = nn.Embedding(n_entities + 1, dim)  # last row: padding
        self.relations = nn.Embedding(n_relations + 1, dim)
        self.attention = nn.Linear(dim, 1)
        nn.init.normal_(self.entities.weight, std=0.1)
        # Pad each item's pairs into one (n_items, max_pairs) matrix for a batched gather.
        order = np.argsort(item, kind="stable")
        counts = np.bincount(item, minlength=n_items)
        width = max(int(counts.max(initial=0)), 1)
        slot = np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)
        ent = np.full((n_items, width), n_entities)
        rel = np.full((n_items, width), n_relations)
        ent[item[order], slot] = entity[order]
        rel[item[order], slot] = relation[order]
        self.register_buffer("item_entities", torch.as_tensor(ent), persistent=False)  # derived from the scenario
        self.register_buffer("item_relations", torch.as_tensor(rel), persistent=False)
        self.pad = n_entities

    def forward(self, items: torch.Tensor):
        ent, rel = self.item_entities[items], self.item_relations[items]
        keys = self.entities(ent) * torch.sigmoid(self.relations(rel))
        logits = self.attention(torch.tanh(keys)).squeeze(-1).masked_fill(ent == self.pad, -torch.inf)
        weights = torch.nan_to_num(F.softmax(logits, -1))  # items without entities get a zero vector
        return (weights[..., None] * keys).sum(-2)


class LMKGNet(nn.Module):
    def __init__(self, p: dict, text_vectors: torch.Tensor, item_domain: torch.Tensor, knowledge: Knowledge | None,
                 n_domains: int):
        super().__init__()
        dim, n_items = p["dim"], len(item_domain)
        self.p = p
        self.register_buffer("text", text_vectors, persistent=False)  # frozen; reloaded from the text cache
        self.register_buffer("item_domain", item_domain, persistent=False)
        self.register_buffer("log_q", torch.zeros(n_items), persistent=False)  # set from the training data in fit
        self.adapter = MoEAdapter(text_vectors.shape[1], dim, p["experts"], p["dropout"]) if p["use_text"] else None
        self.knowledge = knowledge if p["use_kg"] else None
        self.ids = nn.Embedding(n_items, dim) if p["use_id"] else None
        self.bias = nn.Embedding(n_items, 1)  # a popularity channel beside the cosine, which is bounded by 1/T
        nn.init.zeros_(self.bias.weight)
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.02)
        self.domains = nn.Embedding(n_domains, dim)
        self.positions = nn.Embedding(p["max_history"], dim)
        for table in (self.domains, self.positions):  # small, so the items' content dominates the input at first
            nn.init.normal_(table.weight, std=0.02)
        self.input_norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, p["heads"], 2 * dim, p["dropout"], batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, p["layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.readout = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.item_table = None  # every item's representation, computed once while the weights stay fixed (eval)

    def train(self, mode: bool = True):
        if mode:  # the weights are about to change
            self.item_table = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self.item_table = None
        return super().load_state_dict(*args, **kwargs)

    def freeze_items(self) -> None:
        """Compute every item's representation once, for scoring: they do not change until training resumes."""
        self.eval()
        with torch.no_grad():
            self.item_table = self.items(torch.arange(len(self.item_domain), device=self.item_domain.device))

    def items(self, idx: torch.Tensor) -> torch.Tensor:
        """Representations of items idx (any shape); each distinct item is computed once."""
        if self.item_table is not None:
            return self.item_table[idx]
        flat, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
        out = torch.zeros(len(flat), self.p["dim"], device=flat.device)
        if self.adapter is not None:
            out = out + self.adapter(self.text[flat])
        if self.knowledge is not None:
            out = out + self.knowledge(flat)
        if self.ids is not None:
            ids = self.ids(flat)
            if self.training and self.p["id_dropout"] > 0:  # whole-vector dropout: learn to do without the id
                keep = torch.rand(len(flat), 1, device=flat.device) >= self.p["id_dropout"]
                ids = ids * keep
            out = out + ids
        return out[inverse].reshape(*idx.shape, -1)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(batch, L) item indices, -1 padded at the end -> (batch, L, dim) causal states."""
        pad = history < 0
        h = history.clamp(min=0)
        x = self.input_norm(self.items(h)) + self.domains(self.item_domain[h]) \
            + self.positions(torch.arange(h.shape[1], device=h.device))
        x = x.masked_fill(pad[..., None], 0.0)
        causal = torch.triu(torch.ones(h.shape[1], h.shape[1], dtype=torch.bool, device=h.device), 1)
        return self.norm(self.encoder(x, mask=causal, src_key_padding_mask=pad))

    def query(self, states: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """User vectors for predicting an item of `domain` from the states."""
        return self.readout(torch.cat([states, self.domains(domain)], -1))

    def user_vectors(self, history: torch.Tensor, domain: int) -> torch.Tensor:
        """One vector per row for the next item of `domain`, from the last real position of each history."""
        empty = (history >= 0).sum(1) == 0
        history = torch.where(empty[:, None], torch.zeros_like(history), history)  # an empty history reads item 0...
        states = self.encode(history)
        last = ((history >= 0).sum(1) - 1).clamp(min=0)
        state = states[torch.arange(len(history)), last]
        state = state.masked_fill(empty[:, None], 0.0)  # ...but its state is wiped: the domain prior alone
        return self.query(state, torch.full((len(history),), domain, device=history.device))

    def calculate_loss(self, seq: torch.Tensor, negatives: torch.Tensor):
        """seq: (B, L+1) item indices (-1 pad at the end). Every position predicts the next item against shared
        candidates: other positions' positives (popular items, sampled as they occur) plus uniform random items,
        restricted to the predicted item's domain. Logits are corrected by the log of each item's sampling
        probability (logQ), or the model would learn to rank popular items down in the full ranking."""
        inputs, targets = seq[:, :-1], seq[:, 1:]
        valid = (inputs >= 0) & (targets >= 0)
        states = self.encode(inputs)[valid]
        pos = targets[valid]
        in_batch = pos[torch.randperm(len(pos), device=pos.device)[: self.p["negatives"]]]
        candidates = torch.cat([in_batch, negatives])
        vectors = F.normalize(self.items(torch.cat([pos, candidates])), dim=-1)
        q = F.normalize(self.query(states, self.item_domain[pos]), dim=-1)
        positive = (q * vectors[: len(pos)]).sum(-1, keepdim=True) / self.p["temperature"] \
            + self.bias(pos) - self.log_q[pos, None]
        others = (q @ vectors[len(pos):].T) / self.p["temperature"] + self.bias(candidates).T - self.log_q[candidates]
        wrong = (self.item_domain[candidates][None, :] != self.item_domain[pos][:, None]) | (candidates[None, :] == pos[:, None])
        logits = torch.cat([positive, others.masked_fill(wrong, -torch.inf)], 1)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


class LMKG(Recommender):
    name = "lmkg"
    uses_history = True
    defaults = DEFAULTS
    post_training = ("use_cf",)  # the collaborative channel is fitted after the network

    def _net(self, scenario, text_vectors):
        p = self.params
        item_domain = torch.as_tensor(scenario.items["domain"].map({d: i for i, d in enumerate(scenario.domains)})
                                      .to_numpy(), dtype=torch.long)
        knowledge = None
        if p["use_kg"]:
            ent = kg.item_graph(scenario.items, scenario.triples, p["kg_hops"])
            rel_codes, _ = pd.factorize(ent["relation"])
            ent_codes, entities = pd.factorize(ent["entity"])
            knowledge = Knowledge(ent["item"].to_numpy(), rel_codes, ent_codes, scenario.n_items,
                                  int(rel_codes.max(initial=-1)) + 1, len(entities), p["dim"])
        return LMKGNet(p, text_vectors, item_domain, knowledge, len(scenario.domains)).to(self.device)

    def _text(self, scenario, progress=None):
        if not self.params["use_text"]:
            return torch.zeros(scenario.n_items, 1)
        report = None if progress is None else (
            lambda done, total: progress({"stage": "embedding item texts", "texts": f"{done}/{total}"}, done / total))
        vectors, _ = text.embed_items(scenario.items, scenario.workspace, self.params["encoder"], progress=report)
        return torch.as_tensor(vectors, dtype=torch.float32)

    def fit(self, scenario, progress=None):
        self._seed()
        p = self.params
        self.net_ = self._net(scenario, self._text(scenario, progress))
        self.n_target_, self.target_items_ = scenario.n_target, None
        self.cf_, self.cf_weights_ = None, torch.zeros(2)
        sequences = training_sequences(scenario, p["max_history"] + 1, p["use_source"])
        self.net_.log_q.copy_(sampling_log_probability(sequences, self.net_.item_domain.cpu()))
        prefixes, targets = cold_start_windows(scenario, p["max_history"]) if p["cold_windows"] and p["use_source"] \
            else (np.zeros((0, p["max_history"]), np.int64), [])
        ranges = [scenario.domain_range[d] for d in scenario.domains]

        def batches(rng):
            windows = np.concatenate([sequences, _with_one_of(prefixes, targets, rng)])
            seqs = torch.as_tensor(windows, device=self.device)
            lengths = (windows >= 0).sum(1)
            # Windows of similar length share a batch (cut to its longest row): far less padding to encode.
            order = np.lexsort((rng.random(len(lengths)), lengths))
            chunks = [order[i:i + p["batch_size"]] for i in range(0, len(order), p["batch_size"])]
            for i in rng.permutation(len(chunks)):
                idx = chunks[i]
                per_domain = max(1, p["negatives"] // len(ranges))
                neg = np.concatenate([rng.integers(lo, hi, per_domain) for lo, hi in ranges])
                rows = seqs[torch.as_tensor(idx, device=self.device), : int(lengths[idx].max())]
                yield rows, torch.as_tensor(neg, device=self.device)

        self.log_ = fit_module(self.net_, batches, self, scenario, p, progress,
                               optimiser=torch.optim.AdamW(self.net_.parameters(), lr=p["lr"],
                                                           weight_decay=p["weight_decay"]))
        self.net_.eval()  # drops item vectors computed before the best epoch's weights were restored
        self.target_items_ = None
        if p["use_cf"]:
            self.cf_ = itemknn.similarity(scenario, p["neighbours"])
            chosen = {s: self._choose_cf_weight(scenario, s) for s in ("warm", "cold")}
            self.cf_weights_ = torch.tensor([chosen["warm"][0], chosen["cold"][0]])
            self.log_["cf"] = {s: {"weight": w, "valid_ndcg@10": v} for s, (w, v) in chosen.items()}
            if progress:
                progress({"stage": "collaborative channel", **{f"{s} weight": w for s, (w, _) in chosen.items()},
                          **{f"{s} valid_ndcg@10": v for s, (_, v) in chosen.items()}}, 1.0)
        return self

    def score(self, batch):
        network, cf, cold = self._channels(batch.history)
        if cf is None:
            return network
        return _add_rows(network, cf, self.cf_weights_[cold.long().cpu()])

    def _channels(self, history):
        """The network's scores, the CF channel's scores (sparse: (batch, n_target) csr, None without a channel)
        and which rows have no target history (cold). The CF row is scaled so that weight w adds w network
        standard deviations at its best item: ranking by network + w * cf is ranking by the standardised network
        score + w * cf / max(cf), with no extra pass over the dense (batch, n_target) matrix, which dominates
        scoring time: the CF channel touches only the items the histories' neighbourhoods reach."""
        history = self._visible(history)
        if self.target_items_ is None:
            self.prepare()
        users = F.normalize(self._user_rows(history), dim=-1)
        network = torch.addmm(self.net_.bias.weight[: self.n_target_, 0], users, self.target_items_.T,
                              alpha=1 / self.params["temperature"])
        cold = ~((history >= 0) & (history < self.n_target_)).any(1)
        if self.cf_ is None:
            return network, None, cold
        cf = itemknn.history_matrix(history, self.cf_)
        counts = np.diff(cf.indptr)
        top = np.zeros(len(counts), np.float32)  # each row's largest score (similarities are >= 0)
        top[counts > 0] = np.maximum.reduceat(cf.data, cf.indptr[:-1][counts > 0])
        cf.data *= np.repeat(self._network_std(users).detach().cpu().numpy() / np.maximum(top, 1e-6), counts)
        return network, cf, cold

    def _choose_cf_weight(self, scenario, segment: str) -> tuple[float, float]:
        """The CF weight with the best NDCG@10 on the segment's validation cases (0 when there are none), and
        that NDCG@10."""
        cases = scenario.valid.subset(np.flatnonzero(scenario.valid.segment == segment))
        totals = np.zeros(len(CF_WEIGHTS))
        self.net_.eval()
        self.prepare()
        with torch.no_grad():
            for lo in range(0, len(cases), 1024):
                rows = np.arange(lo, min(lo + 1024, len(cases)))
                network, cf, _ = self._channels(scenario.batch(cases, rows).history.to(self.device))
                for j, weight in enumerate(CF_WEIGHTS):
                    both = _add_rows(network.clone(), cf, torch.full((len(rows),), weight))
                    _, hits = top_and_hits(mask_known(both, cases, rows), cases, rows)
                    totals[j] += metrics.ranking_metrics(hits, cases.relevant.lengths[rows], ks=(10,))["ndcg@10"].sum()
        self.target_items_ = None
        best = int(np.argmax(totals))
        return CF_WEIGHTS[best], float(totals[best] / max(len(cases), 1))

    def prepare(self):
        """The target items' (normalised) vectors, shared by every batch of an evaluation."""
        self.net_.freeze_items()
        self.target_items_ = F.normalize(self.net_.item_table[: self.n_target_], dim=-1)
        v, b = self.target_items_.double(), self.net_.bias.weight[: self.n_target_, 0].detach().double()
        self.moments_ = (v.mean(0), v.T @ v / len(v), v.T @ b / len(v), b.mean(), (b * b).mean())

    def _network_std(self, users: torch.Tensor) -> torch.Tensor:
        """Per row, the std of the network scores users @ items.T / T + bias over all target items, from the
        items' first and second moments (d x d): exact, without another pass over the (batch, n_target) scores."""
        mean_v, gram, cross, mean_b, mean_b2 = self.moments_
        a = users.double() / self.params["temperature"]
        mean = a @ mean_v + mean_b
        square = ((a @ gram) * a).sum(1) + 2 * (a @ cross) + mean_b2
        n = self.n_target_
        return ((square - mean ** 2).clamp(min=0) * n / max(n - 1, 1)).sqrt().float()

    def item_vectors(self):
        self.net_.freeze_items()
        return F.normalize(self.net_.item_table, dim=-1)

    @torch.no_grad()
    def user_vectors(self, batch):
        """(batch, dim) the network's target-domain user vectors, built from each history as score() builds them
        (before normalisation)."""
        if self.target_items_ is None:
            self.prepare()
        return self._user_rows(self._visible(batch.history.to(self.device)))

    def entity_count(self, item: int) -> int:
        """How many knowledge-graph entity slots item `item` attends over (0 without the knowledge module)."""
        k = self.net_.knowledge
        return 0 if k is None else int((k.item_entities[item] != k.pad).sum())

    @torch.no_grad()
    def score_perturbed(self, history, item, keep_history, keep_entities):
        """(P,) scores of target item `item` under P perturbations of what the model sees, in one batched pass.
        Copy p keeps the positions of `history` (L,) where keep_history[p] (P, L) is True, and the item's entity
        slots where keep_entities[p] (P, entity_count(item)) is True. Channels are combined exactly as in score():
        the CF channel's scale needs each perturbed history's full row of network scores, so those are computed."""
        if not 0 <= item < self.n_target_:
            raise ValueError(f"item {item} is not a target item (0..{self.n_target_ - 1})")
        if keep_entities.shape[1] != self.entity_count(item):
            raise ValueError(f"item {item} has {self.entity_count(item)} entity slots, "
                             f"keep_entities has {keep_entities.shape[1]} columns")
        device = self.device
        history, keep_history, keep_entities = history.to(device), keep_history.to(device), keep_entities.to(device)
        rows = _left_align(torch.where(keep_history, history[None, :], -1))
        if rows.shape[1] == 0:  # as recommend() does for an empty history: one padding column
            rows = torch.full((len(rows), 1), -1, dtype=torch.long, device=device)
        rows = self._visible(rows)
        if self.target_items_ is None:
            self.prepare()
        users = F.normalize(self._user_rows(rows), dim=-1)
        bias = self.net_.bias.weight[: self.n_target_, 0]
        network = torch.addmm(bias, users, self.target_items_.T, alpha=1 / self.params["temperature"])
        candidate = F.normalize(self._item_with_entities(item, keep_entities), dim=-1)
        network[:, item] = bias[item] + (users * candidate).sum(-1) / self.params["temperature"]
        if self.cf_ is None:
            return network[:, item]
        cold = ~((rows >= 0) & (rows < self.n_target_)).any(1)
        cf, cf_max = self._cf_of_item(rows, item)
        mean = network.mean(1, keepdim=True)  # two-pass std: the same figure as Tensor.std, in half the time
        std = (network - mean).square_().sum(1).div_(network.shape[1] - 1).sqrt_()
        scale = std / cf_max.clamp(min=1e-6)
        return network[:, item] + self.cf_weights_.to(device)[cold.long()] * (cf * scale)

    def _cf_of_item(self, rows, item: int):
        """The CF channel's score of `item` and each row's largest CF score, as itemknn.history_scores gives them,
        from only the similarity rows of the items the histories hold and the target items those reach: every
        other target item scores 0 and similarities are >= 0, so the row maximum is among the reached ones."""
        held = torch.unique(rows[rows >= 0]).cpu()
        reached = self.cf_[held.numpy()]
        columns = np.union1d(reached.indices, [item])
        local = torch.searchsorted(held, rows.cpu().clamp(min=0))
        local = torch.where(rows.cpu() >= 0, local, -1)
        cf = itemknn.history_scores(local, reached[:, columns]).to(rows.device)
        return cf[:, int(np.searchsorted(columns, item))], cf.max(1).values.clamp(min=0)

    def _visible(self, history):
        """The (left-aligned, -1 padded) histories as the network sees them: target items only without use_source."""
        if self.params["use_source"]:
            return history
        return _left_align(torch.where(history < self.n_target_, history, torch.full_like(history, -1)))

    def _user_rows(self, history):
        """Unnormalised target-domain user vectors from the (visible) histories."""
        recent = _most_recent(history, self.params["max_history"])
        lengths = (recent >= 0).sum(1)
        users = torch.empty(len(recent), self.params["dim"], device=recent.device)
        for rows in torch.argsort(lengths).split(256):  # similar lengths together, each chunk cut to its longest
            users[rows] = self.net_.user_vectors(recent[rows, : max(int(lengths[rows].max()), 1)], 0)
        return users

    def _item_with_entities(self, item: int, keep: torch.Tensor) -> torch.Tensor:
        """(P, dim) item `item` as LMKGNet.items() builds it, its knowledge vector attending only over the kept
        entity slots (computed afresh: the cached item table holds the unmasked vector)."""
        net = self.net_
        idx = torch.tensor([item], device=self.device)
        out = torch.zeros(1, self.params["dim"], device=self.device)
        if net.adapter is not None:
            out = out + net.adapter(net.text[idx])
        out = out.expand(len(keep), -1)
        if net.knowledge is not None:
            k = net.knowledge
            ent, rel = k.item_entities[item], k.item_relations[item]
            keys = k.entities(ent) * torch.sigmoid(k.relations(rel))
            slots = torch.zeros(len(keep), len(ent), dtype=torch.bool, device=self.device)
            slots[:, : keep.shape[1]] = keep  # real slots come first, padding after
            logits = k.attention(torch.tanh(keys)).squeeze(-1).expand(len(keep), -1)
            logits = logits.masked_fill(~slots | (ent == k.pad), -torch.inf)
            weights = torch.nan_to_num(F.softmax(logits, -1))  # every entity removed: a zero knowledge vector
            out = out + (weights[..., None] * keys).sum(-2)
        if net.ids is not None:
            out = out + net.ids(idx)
        return out

    def state(self):
        tensors = dict(self.net_.state_dict())
        if self.cf_ is not None:
            tensors.update(itemknn.similarity_state(self.cf_, "cf."), **{"cf.weights": self.cf_weights_})
        return tensors

    def load_state(self, scenario, tensors):
        self.net_ = self._net(scenario, self._text(scenario))  # text vectors come from the cache, not the weights
        self.net_.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("cf.")})
        self.net_.eval()
        self.n_target_, self.target_items_ = scenario.n_target, None
        self.cf_, self.cf_weights_ = None, torch.zeros(2)
        if self.params["use_cf"]:
            self.cf_, self.cf_weights_ = itemknn.similarity_from_state(tensors, "cf."), tensors["cf.weights"]
        return self


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


def _with_one_of(prefixes: np.ndarray, targets: list[np.ndarray], rng) -> np.ndarray:
    """Each prefix followed by one of its user's target items, drawn anew each epoch."""
    windows = np.full((len(prefixes), prefixes.shape[1] + 1), -1, np.int64)
    windows[:, :-1] = prefixes
    lengths = (prefixes >= 0).sum(1)
    windows[np.arange(len(prefixes)), lengths] = [t[rng.integers(len(t))] for t in targets]
    return windows


def _left_align(history: torch.Tensor) -> torch.Tensor:
    """Move the valid (>= 0) entries of each row to the front, keeping their order."""
    order = torch.argsort((history < 0).to(torch.int8), dim=1, stable=True)
    return torch.gather(history, 1, order)


def sampling_log_probability(sequences: np.ndarray, item_domain: torch.Tensor) -> torch.Tensor:
    """log q(i) of the candidate sampler: half in-batch positives (item frequency), half uniform, per domain."""
    targets = sequences[:, 1:][sequences[:, 1:] >= 0]
    freq = torch.bincount(torch.as_tensor(targets), minlength=len(item_domain)).double()
    n_domains = int(item_domain.max()) + 1
    per_domain = torch.zeros(n_domains, dtype=torch.double).index_add_(0, item_domain, freq)
    size = torch.bincount(item_domain, minlength=n_domains).double()
    q = 0.5 * freq / per_domain[item_domain].clamp(min=1) + 0.5 / size[item_domain]
    return q.log().float()


def _add_rows(dense: torch.Tensor, m, weights: torch.Tensor) -> torch.Tensor:
    """dense += weights[:, None] * m for a csr matrix m, touching only m's stored entries (in place)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    values = torch.from_numpy(m.data) * weights.to(torch.float32)[torch.from_numpy(rows)]
    flat = torch.from_numpy(rows * dense.shape[1] + m.indices)  # csr entries are distinct (row, column) pairs
    return dense.view(-1).index_add_(0, flat.to(dense.device), values.to(dense)).view(dense.shape)


def _most_recent(history: torch.Tensor, n: int) -> torch.Tensor:
    """The last n items of each left-aligned, -1 padded row, still left-aligned."""
    lengths = (history >= 0).sum(1, keepdim=True)
    start = (lengths - n).clamp(min=0)
    idx = start + torch.arange(min(n, history.shape[1]), device=history.device)
    return torch.where(idx < lengths, torch.gather(history, 1, idx.clamp(max=history.shape[1] - 1)), -1)
