"""LightGCN (He et al., SIGIR 2020).

Embeddings are propagated on the normalised user-item graph D^{-1/2} A D^{-1/2} with no
weights or non-linearities; the final embedding is the mean over layers 0..L. BPR loss
plus `reg_weight` × MMRec's EmbLoss on the batch's layer-0 embeddings (as MMRec's
`lightgcn.py`). The graph comes from the data module's cache.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, bpr_loss, l2_reg
from src.models.layers import SparseOp, propagate


class LightGCN(Recommender):
    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_layers: int = 3,
                 reg_weight: float = 1e-4):
        super().__init__(data)
        self.n_layers, self.reg_weight = n_layers, reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.adj = SparseOp(graphs.user_item_adjacency())
        self._cache: tuple[Tensor, Tensor] | None = None

    def propagate(self) -> tuple[Tensor, Tensor]:
        ego = torch.cat([self.user_emb, self.item_emb])
        out = propagate(self.adj, ego, self.n_layers, readout="mean")
        return out[: self.n_users], out[self.n_users:]

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        user_all, item_all = self.propagate()
        u, p, n = user_all[users], item_all[pos], item_all[neg]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * l2_reg(self.user_emb[users], self.item_emb[pos], self.item_emb[neg])
        return terms

    def prepare_eval(self) -> None:
        self._cache = self.propagate()

    def end_eval(self) -> None:
        self._cache = None

    def full_scores(self, users: Tensor) -> Tensor:
        user_all, item_all = self.final_embeddings()
        return user_all[users] @ item_all.T

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        return self._cache if self._cache is not None else self.propagate()
