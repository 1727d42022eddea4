"""MF-BPR (Rendle et al., UAI 2009): ŷ_ui = e_uᵀ e_i, trained with BPR.

As MMRec's `bpr.py`: Xavier-normal initialised embeddings, BPR loss plus
`reg_weight` × MMRec's EmbLoss on the batch embeddings.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, bpr_loss, l2_reg


class MF(Recommender):
    def __init__(self, data: RecData, graphs=None, embedding_dim: int = 64, reg_weight: float = 0.0):
        super().__init__(data)
        self.reg_weight = reg_weight
        self.user_embedding = nn.Embedding(self.n_users, embedding_dim)
        self.item_embedding = nn.Embedding(self.n_items, embedding_dim)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        # one gather for positives and negatives (one scatter in backward); plain indexing has a
        # cheaper CPU backward than nn.Embedding's (docs/performance.md); same values and gradients
        u = self.user_embedding.weight[users]
        p, n = self.item_embedding.weight[torch.cat([pos, neg])].split(len(pos))
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * l2_reg(u, p, n)
        return terms

    def full_scores(self, users: Tensor) -> Tensor:
        return self.user_embedding(users) @ self.item_embedding.weight.T

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight
