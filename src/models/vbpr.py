"""VBPR (He & McAuley, AAAI 2016) as MMRec builds it (`src/models/vbpr.py`).

An item is the concatenation of a free ID embedding γ_i (d) and a projection of its content,
E f_i + b (d), where f_i concatenates the raw features of every modality. A user is one free
vector of size 2d, read as [γ_u; θ_u], so

    ŷ_ui = γ_uᵀ γ_i + θ_uᵀ (E f_i + b).

Loss: BPR + `reg_weight` × MMRec's EmbLoss on the batch's 2d-dim user, positive and negative
vectors (the projected content half included). Init as MMRec: user and ID item embeddings
Xavier-uniform, E Xavier-normal, b zero. Raw features are frozen.

Differences from MMRec, all on purpose:
- Any number of modalities is concatenated, in the dataset's order; MMRec takes at most two
  and puts text before image. A permutation of E's input columns, so the model and E's
  Xavier-normal init distribution are unchanged.
- The BPR term is the shared `bpr_loss` (log-sigmoid) instead of MMRec's
  `-log(1e-10 + sigmoid(·))`; they agree until the score gap passes about -23.
- A training step projects only the batch's distinct items (MMRec projects the whole
  catalogue every step); the loss and every gradient are the same.
Like MMRec (and unlike the paper's Eq. 2) there are no bias terms: neither β_i nor the
visual bias β'ᵀ f_i (α and β_u do not change a user's ranking anyway).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, bpr_loss, l2_reg


class VBPR(Recommender):
    requires_modalities = True

    def __init__(self, data: RecData, graphs=None, embedding_dim: int = 64, reg_weight: float = 1e-4):
        super().__init__(data)
        self.reg_weight = reg_weight
        feats = torch.cat([torch.as_tensor(f, dtype=torch.float32) for f in data.features.values()], dim=1)
        # frozen input: moves with the module, kept out of checkpoints
        self.register_buffer("item_features", feats, persistent=False)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * embedding_dim)))
        self.item_id_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.content_proj = nn.Linear(feats.shape[1], embedding_dim)
        nn.init.xavier_normal_(self.content_proj.weight)
        nn.init.zeros_(self.content_proj.bias)
        self._items: Tensor | None = None

    def item_vectors(self) -> Tensor:
        """`[n_items, 2d]`: [γ_i ; E f_i + b]."""
        return torch.cat([self.item_id_emb, self.content_proj(self.item_features)], dim=1)

    def batch_item_vectors(self, items: Tensor) -> Tensor:
        """`[len(items), 2d]`: the rows of `item_vectors()` for `items`, projecting only the distinct
        ones. Same values and gradients as projecting the whole catalogue (MMRec does that every
        step); the FLOPs of E's product and of its weight gradient scale with the batch instead."""
        distinct, at = items.unique(return_inverse=True)
        vectors = torch.cat([self.item_id_emb[distinct], self.content_proj(self.item_features[distinct])], dim=1)
        return vectors[at]

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        p, n = self.batch_item_vectors(torch.cat([pos, neg])).split(len(pos))
        u = self.user_emb[users]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * l2_reg(u, p, n)
        return terms

    def prepare_eval(self) -> None:
        self._items = self.item_vectors()

    def end_eval(self) -> None:
        self._items = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        # 2d-dim vectors: [γ_u; θ_u] and [γ_i; E f_i + b]
        return self.user_emb, self._items if self._items is not None else self.item_vectors()

    def full_scores(self, users: Tensor) -> Tensor:
        items = self._items if self._items is not None else self.item_vectors()
        return self.user_emb[users] @ items.T
