"""What engine.explain needs of LMKG: re-scoring one item under many perturbations of what the model sees.

A perturbation removes history positions (the user vectors are recomputed) and the item's knowledge-graph entity
slots (its knowledge vector attends only over the kept ones). Channels combine exactly as in score(); the row's
standard deviation, which scales the offsets and the collaborative channel, is taken over the catalogue as the
model sees it (the item's own perturbed vector is one of thousands and is not put back into it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..base import Explainable
from . import collaborative, windows


class ExplanationHooks(Explainable):
    def read_history(self, history: np.ndarray) -> np.ndarray:
        if not len(history):
            return history
        row = self.visible(torch.as_tensor(history, dtype=torch.long)[None])[0].cpu().numpy()
        return row[row >= 0]

    def entity_slots(self, item: int) -> list[tuple[str, str]]:
        k = self.net_.knowledge
        if k is None:
            return []
        entities, relations = k.item_entities[item].cpu(), k.item_relations[item].cpu()
        kept = entities != k.pad
        return [(k.relation_names[r], k.entity_names[e]) for r, e in zip(relations[kept].tolist(),
                                                                           entities[kept].tolist())]

    def entity_count(self, item: int) -> int:
        k = self.net_.knowledge
        return 0 if k is None else int((k.item_entities[item] != k.pad).sum())

    @torch.no_grad()
    def score_perturbed(self, history, item, keep_history, keep_entities):
        """(P,) scores of target item `item` under P perturbations, in one batched pass. Copy p keeps the positions
        of `history` (L,) where keep_history[p] (P, L) is True, and the item's entity slots where
        keep_entities[p] (P, entity_count(item)) is True."""
        if not 0 <= item < self.n_target_:
            raise ValueError(f"item {item} is not a target item (0..{self.n_target_ - 1})")
        if keep_entities.shape[1] != self.entity_count(item):
            raise ValueError(f"item {item} has {self.entity_count(item)} entity slots, "
                             f"keep_entities has {keep_entities.shape[1]} columns")
        device = self.device
        history, keep_history, keep_entities = history.to(device), keep_history.to(device), keep_entities.to(device)
        rows = windows.left_align(torch.where(keep_history, history[None, :], -1))
        if rows.shape[1] == 0:  # as recommend() does for an empty history: one padding column
            rows = torch.full((len(rows), 1), -1, dtype=torch.long, device=device)
        rows = self.visible(rows)
        gate, weight, offset, semantic, text_view = self._settings(rows)
        mixed, target = self.views(rows, gate)
        gate = gate.to(mixed)[:, None]
        users = F.normalize((1 - gate) * mixed + gate * target, dim=-1)
        candidate = F.normalize(self._item_with_entities(item, keep_entities), dim=-1)
        scores = self.target_bias_[item] + (users * candidate).sum(-1) / self.params["temperature"]
        std = self._network_std(users)
        if not bool(self.net_.known[item]):
            scores = scores + offset.to(std) * std
        if self.cf_ is not None and self.params["use_cf"]:
            scores = scores + weight.to(std) * std * collaborative.item_scores(rows, self.cf_, item)
        if self.semantic_ is not None:
            # the explainer hands in the visible history (engine.explain cuts it as visible() does); a row whose
            # text channel reads the target items alone keeps no source position there
            keep_text, target = keep_history.cpu(), history.cpu() < self.n_target_
            keep_text = torch.where((text_view > 0).cpu()[:, None], keep_text & target, keep_text)
            text = self.semantic_.score_perturbed(history.cpu(), item, keep_text, keep_entities[:, :0].cpu())
            scores = scores + semantic.to(std) * std * text.to(std)
        return scores

    def _item_with_entities(self, item: int, keep: torch.Tensor) -> torch.Tensor:
        """(P, dim) item `item` as the network represents it for scoring, its knowledge vector attending only over
        the kept entity slots."""
        net = self.net_
        idx = torch.tensor([item], device=self.device)
        slots = torch.ones(len(keep), net.knowledge.item_entities.shape[1] if net.knowledge is not None else 0,
                           dtype=torch.bool, device=self.device)
        slots[:, : keep.shape[1]] = keep  # real slots come first, padding after
        out = net.content(idx.expand(len(keep)), slots if net.knowledge is not None else None)
        if bool(net.known[item]):
            out = out + net.ids(idx)
        return out
