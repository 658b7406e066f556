"""LMKG's network: item vectors from text, knowledge and ID; a causal Transformer over the mixed-domain history.

Item i = text_adapter(whitened text_i) + knowledge_i + id_i, with a popularity bias b_i beside the cosine.
Items nobody had in training (new items) have no trained ID and no popularity: they take the *content path*
(no ID, a shared learned bias). Training ranks every positive against its negatives twice, once as full items and
once by the content path alone, so the content path learns to rank on its own and a new item's score sits on the
scale of a known one's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import text_space


class Knowledge(nn.Module):
    """An item's knowledge vector: attention over its (relation, entity) pairs, the relation shaping each entity.
    Entities are learned from every item that has them, so a new item inherits its brand's and categories'
    collaborative signal."""

    def __init__(self, item: np.ndarray, relation: np.ndarray, entity: np.ndarray, relation_names, entity_names,
                 n_items, dim, sparse: bool = True):
        super().__init__()
        n_relations, n_entities = len(relation_names), len(entity_names)
        self.relation_names, self.entity_names = list(relation_names), list(entity_names)  # what a slot is, to explain
        self.entities = nn.Embedding(n_entities + 1, dim, sparse=sparse)  # last row: padding
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

    def forward(self, items: torch.Tensor, keep: torch.Tensor | None = None):
        """Knowledge vectors of items (any shape); `keep` (..., slots) masks entity slots out (explanations)."""
        ent, rel = self.item_entities[items], self.item_relations[items]
        keys = self.entities(ent) * torch.sigmoid(self.relations(rel))
        mask = ent == self.pad if keep is None else (ent == self.pad) | ~keep
        logits = self.attention(torch.tanh(keys)).squeeze(-1).masked_fill(mask, -torch.inf)
        weights = torch.nan_to_num(F.softmax(logits, -1))  # items without entities get a zero vector
        return (weights[..., None] * keys).sum(-2)


class LMKGNet(nn.Module):
    def __init__(self, p: dict, text_vectors: torch.Tensor, item_domain: torch.Tensor, known: torch.Tensor,
                 knowledge: Knowledge | None, n_domains: int, fit_whitening: bool = True, sparse: bool = True):
        super().__init__()
        dim, n_items = p["dim"], len(item_domain)
        self.p = p
        self.register_buffer("text", text_vectors, persistent=False)  # frozen; reloaded from the text cache
        self.register_buffer("item_domain", item_domain, persistent=False)
        self.register_buffer("known", known, persistent=False)  # items with training interactions
        self.adapter = None
        if p["use_text"]:
            if fit_whitening:
                mean, projection = text_space.fit_whitening(text_vectors.numpy(), p["whitening"], p["text_dim"])
            else:  # a trained net: load_state_dict brings the fitted ones (and whitens), so this is only their shape
                d = text_vectors.shape[1]
                mean, projection = torch.zeros(d), torch.zeros(d, min(p["text_dim"], d))
            self.register_buffer("text_mean", torch.as_tensor(mean))  # kept with the weights (see text_space)
            self.register_buffer("text_projection", torch.as_tensor(projection))
            if fit_whitening:
                self._whiten()
            self.adapter = nn.Linear(projection.shape[1], dim)  # linear: non-linear text->ID maps hurt (ZESRec)
        self.knowledge = knowledge if p["use_kg"] else None
        # sparse: a step's gradient holds only the rows it read (engine.train.AdamWithSparseTables)
        self.ids = nn.Embedding(n_items, dim, sparse=sparse)
        self.bias = nn.Embedding(n_items, 1, sparse=sparse)  # popularity beside the cosine, which is bounded by 1/T
        self.new_bias = nn.Parameter(torch.zeros(1))  # the bias of an item on the content path
        nn.init.zeros_(self.bias.weight)
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
        result = super().load_state_dict(*args, **kwargs)
        if self.adapter is not None:
            self._whiten()
        return result

    def _whiten(self) -> None:
        """The frozen text in the whitened space, computed once (it is the adapter's input at every step)."""
        self.register_buffer("whitened", text_space.apply_whitening(self.text, self.text_mean, self.text_projection),
                             persistent=False)

    def freeze_items(self) -> None:
        """Compute every item's representation once, for scoring: they do not change until training resumes."""
        self.eval()
        with torch.no_grad():
            self.item_table, self.item_bias = self.items(torch.arange(len(self.item_domain),
                                                                      device=self.item_domain.device))

    # ---- items -------------------------------------------------------------------------------------------------
    def content(self, idx: torch.Tensor, keep_entities: torch.Tensor | None = None) -> torch.Tensor:
        """The content path of items idx (1-d): adapted text + knowledge; no ID."""
        out = torch.zeros(len(idx), self.p["dim"], device=idx.device)
        if self.adapter is not None:
            out = out + self.adapter(F.dropout(self.whitened[idx], self.p["dropout"], self.training))
        if self.knowledge is not None:
            out = out + self.knowledge(idx, keep_entities)
        return out

    def items(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Representations (*idx.shape, dim) and biases (*idx.shape) of items idx; each distinct item is computed
        once. A new item takes the content path: no ID, the content path's shared bias."""
        if self.item_table is not None:
            return self.item_table[idx], self.item_bias[idx]
        flat, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
        vectors, bias = self._full(flat, self.content(flat))
        # index_select, not vectors[inverse]: the backward of indexing adds repeated rows in a thread-dependent order
        # on the CPU, so two trainings of one seed drifted apart; index_select's adds them in a fixed order
        vectors, bias = vectors.index_select(0, inverse), bias.index_select(0, inverse)
        return vectors.reshape(*idx.shape, -1), bias.reshape(idx.shape)

    def _full(self, flat: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        known = self.known[flat]
        return content + self.ids(flat) * known[:, None], torch.where(known, self.bias(flat)[:, 0], self.new_bias)

    # ---- users -------------------------------------------------------------------------------------------------
    def _inputs(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's input of (batch, L) item indices (-1 padded at the end), the padding and the causal mask."""
        pad = history < 0
        h = history.clamp(min=0)
        x = self.input_norm(self.items(h)[0]) + self.domains(self.item_domain[h]) \
            + self.positions(torch.arange(h.shape[1], device=h.device))
        causal = torch.triu(torch.ones(h.shape[1], h.shape[1], dtype=torch.bool, device=h.device), 1)
        return x.masked_fill(pad[..., None], 0.0), pad, causal

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """(batch, L) item indices, -1 padded at the end -> (batch, L, dim) causal states."""
        x, pad, causal = self._inputs(history)
        return self.norm(self.encoder(x, mask=causal, src_key_padding_mask=pad))

    def last_states(self, history: torch.Tensor) -> torch.Tensor:
        """(batch, L) item indices, -1 padded at the end, each with at least one -> (batch, dim) the causal state at
        each row's last item: encode's at that position. Only that position is read, so the last layer computes
        it alone (its keys and values still come from every position): scoring's encoder time fell by a fifth."""
        x, pad, causal = self._inputs(history)
        *first, final = self.encoder.layers
        for layer in first:
            x = layer(x, src_mask=causal, src_key_padding_mask=pad)
        rows, last = torch.arange(len(x), device=x.device), (~pad).sum(1) - 1
        keys = final.norm1(x)  # a pre-norm layer (norm_first), as built in __init__
        # The last item sees every item (none after it): the padding mask is its causal mask.
        seen = final.self_attn(keys[rows, last][:, None], keys, keys, key_padding_mask=pad, need_weights=False)[0]
        h = x[rows, last] + final.dropout1(seen[:, 0])
        h = h + final.dropout2(final.linear2(final.dropout(final.activation(final.linear1(final.norm2(h))))))
        return self.norm(h)

    def query(self, states: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """User vectors for predicting an item of `domain` from the states."""
        return self.readout(torch.cat([states, self.domains(domain)], -1))

    def user_vectors(self, history: torch.Tensor, domain: int) -> torch.Tensor:
        """One vector per row for the next item of `domain`, from the last real position of each history."""
        empty = (history >= 0).sum(1) == 0
        history = torch.where(empty[:, None], torch.zeros_like(history), history)  # an empty history reads item 0...
        state = self.last_states(history).masked_fill(empty[:, None], 0.0)  # ...but its state is wiped
        return self.query(state, torch.full((len(history),), domain, device=history.device))

    # ---- training ----------------------------------------------------------------------------------------------
    def calculate_loss(self, seq: torch.Tensor, negatives: torch.Tensor):
        """seq: (B, L+1) item indices (-1 pad at the end). Every position predicts the next item against the
        batch's shared uniform negatives of that item's domain: a sampled softmax whose proposal is uniform within
        the domain, so it needs no sampling correction. Logits: cosine over a temperature plus the item's bias.
        Two views of the candidates are trained side by side (LLM-ESR's dual view): the full item (content + ID)
        and the content path alone, so the content path ranks well on its own, as it must for new items."""
        inputs, targets = seq[:, :-1], seq[:, 1:]
        valid = (inputs >= 0) & (targets >= 0)
        states = self.encode(inputs)[valid]
        pos = targets[valid]
        q = F.normalize(self.query(states, self.item_domain[pos]), dim=-1)
        flat, inverse = torch.unique(torch.cat([pos, negatives]), return_inverse=True)
        content = self.content(flat)
        wrong = (self.item_domain[negatives][None, :] != self.item_domain[pos][:, None]) \
            | (negatives[None, :] == pos[:, None])
        loss = torch.zeros((), device=seq.device)
        for vectors, bias in (self._full(flat, content), (content, self.new_bias.expand(len(flat)))):
            vectors, bias = F.normalize(vectors, dim=-1).index_select(0, inverse), bias.index_select(0, inverse)
            positive = (q * vectors[: len(pos)]).sum(-1, keepdim=True) / self.p["temperature"] + bias[: len(pos), None]
            others = torch.addmm(bias[len(pos):], q, vectors[len(pos):].T, alpha=1 / self.p["temperature"])
            logits = torch.cat([positive, others.masked_fill(wrong, -torch.inf)], 1)
            loss = loss + F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))
        return loss
