"""BM3 (Zhou et al., WWW 2023): bootstrapped latent representations, no negative sampling.

Follows MMRec's `bm3.py` (enoche/MMRec @ e775373):

- Online encoder: LightGCN on the normalised user-item graph (mean over layers 0..`n_layers`);
  users `u = ū`, items `i = ī + e_i` (the propagated item plus its own ID embedding). Each
  modality m is projected to the same space, `f_m = W_m x_m + b_m`, from its raw feature table,
  which is fine-tuned (MMRec loads it with `freeze=False`; `finetune_features=False` freezes it).
- Target views: the online outputs with gradients stopped and dropout applied
  (`F.dropout(·, dropout)`, always on, as MMRec's call leaves `training=True`). One shared
  linear `predictor` maps every online output (users, items, modality features).
- Loss for a batch of observed pairs (u, i), with `c(a, b) = 1 - mean cos(a, b)`:
  `rec = c(p(u), ĩ) + c(p(i), ũ)` (graph reconstruction), plus `reg_weight` × MMRec's EmbLoss
  on the FULL online user and item tables (`(‖U‖_F + ‖I‖_F) / n_items`), plus `cl_weight` ×
  Σ_m [`c(p(f_m), ĩ)` (alignment with the item target) + `c(p(f_m), f̃_m)` (masked features)].
- Scores: `p(u) · p(i)` on the undropped online outputs.
- Init: Xavier-uniform ID embeddings, Xavier-normal weights of the predictor and projections
  (biases keep PyTorch's default init).

Any number of modalities: one projection and one (alignment + masking) pair per modality
(MMRec has one for image and one for text).

Deliberate departures from MMRec: see the class docstring.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, l2_reg
from src.models.layers import SparseOp, propagate


def cosine_gap(online: Tensor, target: Tensor) -> Tensor:
    """`1 - mean cos(online, target)` over the rows; no gradient reaches `target`."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


def dropped_rows(table: Tensor, ids: Tensor, p: float) -> Tensor:
    """`dropout(table)[ids]` without touching other rows: one mask per distinct id."""
    distinct, inverse = torch.unique(ids, return_inverse=True)
    return F.dropout(table[distinct], p, training=True)[inverse]


class BM3(Recommender):
    """BM3 as described in the module docstring. Deliberate departures from MMRec:

    - MMRec trains BM3 on (user, positive) pairs only (`use_neg_sampling: False`); the harness's
      batches also carry a negative item, which is ignored here. The pairs are the same (every
      training pair once per epoch, shuffled).
    - Dropout masks are drawn for the batch's distinct users/items only and shared by repeated
      ids, which is what MMRec's dropout of the full tables gives once indexed; the modality
      projections and predictor are applied to the batch's distinct items only (MMRec projects
      every item each step; the loss and its gradients are the same).
    - No 1e-7 epsilon in the graph degrees (zero degrees map to 0; see `graphs.user_item_adjacency`).
    """

    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_layers: int = 1,
                 dropout: float = 0.5, reg_weight: float = 0.1, cl_weight: float = 2.0,
                 finetune_features: bool = True):
        super().__init__(data)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"BM3 dropout must lie in [0, 1), got {dropout}")
        self.modalities = list(data.features)
        self.n_layers, self.dropout = n_layers, float(dropout)
        self.reg_weight, self.cl_weight = float(reg_weight), float(cl_weight)

        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.predictor = nn.Linear(embedding_dim, embedding_dim)
        nn.init.xavier_normal_(self.predictor.weight)
        self.features = nn.ParameterDict({
            m: nn.Parameter(graphs.features(m).clone(), requires_grad=finetune_features)
            for m in self.modalities})
        self.proj = nn.ModuleDict({m: nn.Linear(self.features[m].shape[1], embedding_dim)
                                   for m in self.modalities})
        for layer in self.proj.values():
            nn.init.xavier_normal_(layer.weight)
        self.adj = SparseOp(graphs.user_item_adjacency())
        self._cache: tuple[Tensor, Tensor] | None = None

    def propagate(self) -> tuple[Tensor, Tensor]:
        ego = torch.cat([self.user_emb, self.item_emb])
        out = propagate(self.adj, ego, self.n_layers, readout="mean")
        return out[: self.n_users], out[self.n_users:] + self.item_emb

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor | None = None) -> dict[str, Tensor]:
        """BM3 uses only the observed pairs (users, pos); `neg` is ignored."""
        user_all, item_all = self.propagate()
        with torch.no_grad():  # target views: stopped gradients, dropout
            u_target = dropped_rows(user_all, users, self.dropout)
            i_target = dropped_rows(item_all, pos, self.dropout)
        u_online, i_online = self.predictor(user_all[users]), self.predictor(item_all[pos])
        terms = {"rec": cosine_gap(u_online, i_target) + cosine_gap(i_online, u_target)}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * l2_reg(user_all, item_all)
        items, inverse = torch.unique(pos, return_inverse=True)
        for m in self.modalities:
            f = self.proj[m](self.features[m][items])
            with torch.no_grad():
                f_target = F.dropout(f, self.dropout, training=True)[inverse]
            f_online = self.predictor(f)[inverse]
            terms[f"align_{m}"] = self.cl_weight * cosine_gap(f_online, i_target)
            terms[f"mask_{m}"] = self.cl_weight * cosine_gap(f_online, f_target)
        return terms

    def prepare_eval(self) -> None:
        user_all, item_all = self.propagate()
        self._cache = (self.predictor(user_all), self.predictor(item_all))

    def end_eval(self) -> None:
        self._cache = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        if self._cache is not None:
            return self._cache
        user_all, item_all = self.propagate()  # scores are made after the predictor
        return self.predictor(user_all), self.predictor(item_all)

    def full_scores(self, users: Tensor) -> Tensor:
        if self._cache is None:
            self.prepare_eval()
            user_out, item_out = self._cache
            self._cache = None
        else:
            user_out, item_out = self._cache
        return user_out[users] @ item_out.T
