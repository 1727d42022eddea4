"""MMGCN (Wei et al., ACM MM 2019) as MMRec builds it (`src/models/mmgcn.py`, which follows
the authors' `Model_MMGCN.py`).

Each modality m has its own graph branch over the bipartite user-item graph (users first;
one edge each way per training pair, no self loops). Its input is a free per-user
"preference" vector for users and the item's raw features for items, optionally projected
by a linear layer (MMRec: image features -> 256; text enters raw), and L2-normalised by row:
x⁰ = normalize([P_m ; MLP_m(F_m)]). Each layer l then computes

    h     = leaky_relu(aggregate(x W_l))                 aggregation, Eq. 1 ("mean" or "add")
    x_hat = leaky_relu(L_l x) + e_id                     Eq. 5; e_id only if has_id
    x     = leaky_relu(G_l [h ; x_hat])   if concat      combination
            leaky_relu(G_l h + x_hat)     otherwise

with W_l a bias-free square matrix, L_l and G_l linear layers (with bias) to d. The final
representation averages the branches' last layers over modalities (the paper sums them:
a constant factor); a score is the dot product of the user's and the item's. Loss: BPR plus
`reg_weight` × [mean e_id² over the batch's users and items + Σ_m mean P_m²].

MMRec's behaviour kept on purpose (the authors' code does the same):
- `concat=True`: MMRec sets `concate = 'False'`, a non-empty string, so its `if` always takes
  the concatenation branch.
- `n_layers=3`: MMRec's config says `n_layers: 2`, but its GCN always runs three layers.
- `learn_free_embeddings=False`: MMRec creates the ID embeddings and the preferences as plain
  tensors, not `nn.Parameter`s, so the optimiser never updates them: they stay at their random
  init and the `reg` term has no gradient. Here they are buffers (saved in checkpoints so the
  best model can be re-evaluated); `learn_free_embeddings=True` trains them as the paper says.
- Init: W_l, L_l and the first G Xavier-normal; G of layers >= 2, the projection and all
  biases PyTorch's default Linear init.

Differences from MMRec, on purpose:
- Evaluation recomputes the representation with the current weights (`prepare_eval`). MMRec
  scores with the output kept from the last training batch's forward pass, made before that
  batch's optimiser step: one Adam step staler.
- The preference L2 covers every modality; MMRec only adds the image branch's (none when a
  dataset has text only). With the default frozen preferences this changes the logged `reg`
  value only.
- `n_layers` is honoured (three weights per layer, built in a loop) instead of hard-coded.
- Any number of modalities (MMRec: image and/or text), each with its own branch;
  `latent_dims` names the modalities that get MMRec's image projection (default {image: 256}).
- Aggregation is one fixed sparse product per layer (row-normalised adjacency for "mean", the
  binary one for "add") instead of torch_geometric's scatter; isolated nodes get zeros in both.
"""
from __future__ import annotations

from collections.abc import Mapping

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.formats import RecData
from src.data.graphs import row_normalize, scipy_to_torch
from src.data.sparse_utils import binary_csr
from src.models.base import Recommender, bpr_loss
from src.models.layers import SparseOp

AGGREGATIONS = ("mean", "add")


def bipartite_adjacency(r: sp.spmatrix, aggr: str) -> Tensor:
    """`[(U+I), (U+I)]` adjacency of the training pairs in both directions, users first.

    "add": binary; "mean": each row divided by the node's degree (mean over neighbours).
    """
    if aggr not in AGGREGATIONS:
        raise ValueError(f"MMGCN aggr must be one of {AGGREGATIONS}, got {aggr!r}")
    b = binary_csr(r, "MMGCN training matrix")
    a = scipy_to_torch(sp.bmat([[None, b], [b.T, None]], format="coo"), torch.float32).coalesce()
    return row_normalize(a) if aggr == "mean" else a


class ModalityGCN(nn.Module):
    """One modality's branch: input layer and `n_layers` aggregation/combination layers."""

    def __init__(self, features: Tensor, n_users: int, dim: int, n_layers: int, latent_dim: int | None,
                 concat: bool, has_id: bool, learn_preference: bool):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"MMGCN n_layers must be >= 1, got {n_layers}")
        self.concat, self.has_id = concat, has_id
        self.register_buffer("features", features, persistent=False)
        self.project = nn.Linear(features.shape[1], latent_dim) if latent_dim else None
        d_in = latent_dim or features.shape[1]
        preference = nn.init.xavier_normal_(torch.empty(n_users, d_in))
        if learn_preference:
            self.preference = nn.Parameter(preference)
        else:
            self.register_buffer("preference", preference)
        self.conv_weights = nn.ParameterList()
        self.linears, self.combiners = nn.ModuleList(), nn.ModuleList()
        for layer in range(n_layers):
            d = d_in if layer == 0 else dim
            self.conv_weights.append(nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d))))
            self.linears.append(nn.Linear(d, dim))
            nn.init.xavier_normal_(self.linears[-1].weight)
            self.combiners.append(nn.Linear(d + dim if concat else d, dim))
            if layer == 0:  # as MMRec: only the first combiner gets Xavier-normal
                nn.init.xavier_normal_(self.combiners[-1].weight)

    def input_layer(self) -> Tensor:
        items = self.project(self.features) if self.project is not None else self.features
        return F.normalize(torch.cat([self.preference, items]), dim=1)

    def layer(self, index: int, x: Tensor, adj: SparseOp, id_embedding: Tensor) -> Tensor:
        h = F.leaky_relu(adj(x @ self.conv_weights[index]))
        x_hat = F.leaky_relu(self.linears[index](x))
        if self.has_id:
            x_hat = x_hat + id_embedding
        combiner = self.combiners[index]
        if self.concat:
            return F.leaky_relu(combiner(torch.cat([h, x_hat], dim=1)))
        return F.leaky_relu(combiner(h) + x_hat)

    def forward(self, adj: SparseOp, id_embedding: Tensor) -> Tensor:
        x = self.input_layer()
        for index in range(len(self.conv_weights)):
            x = self.layer(index, x, adj, id_embedding)
        return x


class MMGCN(Recommender):
    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_layers: int = 3,
                 latent_dims: Mapping[str, int] | None = None, aggr: str = "mean", concat: bool = True,
                 has_id: bool = True, reg_weight: float = 1e-5, learn_free_embeddings: bool = False):
        super().__init__(data)
        self.reg_weight = reg_weight
        latent_dims = {"image": 256} if latent_dims is None else dict(latent_dims)
        self.adj = SparseOp(graphs.cached("mmgcn_adjacency", {"aggr": aggr, "v": 1},
                                          lambda: bipartite_adjacency(graphs.train_csr(), aggr)))
        id_embedding = nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, embedding_dim))
        if learn_free_embeddings:
            self.id_embedding = nn.Parameter(id_embedding)
        else:
            self.register_buffer("id_embedding", id_embedding)
        self.branches = nn.ModuleDict({
            name: ModalityGCN(torch.as_tensor(feat, dtype=torch.float32), self.n_users, embedding_dim,
                              n_layers, latent_dims.get(name), concat, has_id, learn_free_embeddings)
            for name, feat in data.features.items()})
        self._cache: Tensor | None = None

    def representation(self) -> Tensor:
        """`[(U+I), d]`: the branches' outputs averaged over modalities (users first)."""
        return torch.stack([b(self.adj, self.id_embedding) for b in self.branches.values()]).mean(0)

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        out = self.representation()
        u, p, n = out[users], out[self.n_users + pos], out[self.n_users + neg]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            e = self.id_embedding
            # MMRec pairs every user with its positive and its negative: mean over 2B rows
            id_l2 = e[users].square().mean() + 0.5 * (e[self.n_users + pos].square().mean()
                                                       + e[self.n_users + neg].square().mean())
            pref_l2 = sum(b.preference.square().mean() for b in self.branches.values())
            terms["reg"] = self.reg_weight * (id_l2 + pref_l2)
        return terms

    def prepare_eval(self) -> None:
        self._cache = self.representation()

    def end_eval(self) -> None:
        self._cache = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        out = self._cache if self._cache is not None else self.representation()
        return out[:self.n_users], out[self.n_users:]

    def full_scores(self, users: Tensor) -> Tensor:
        user_all, item_all = self.final_embeddings()
        return user_all[users] @ item_all.T
