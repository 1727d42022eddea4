"""FREEDOM (Zhou & Shen, ACM MM 2023): a frozen item-item graph and a pruned user-item graph.

Follows MMRec's `freedom.py` (enoche/MMRec @ e775373):

- Item-item graph, built once from the RAW features and never updated: per modality, each
  item's `knn_k` most cosine-similar items (binary, directed), normalised `D^-1/2 A D^-1/2`
  with D the row sums on both sides (every row has k entries, so each entry is 1/k); the
  modalities' graphs are summed with weights (below). Item-side embedding
  `h = S^{n_mm_layers} e_item` (last layer, no readout).
- User-item graph: LightGCN propagation of the ID embeddings, mean over layers
  0..`n_ui_layers`. Final user `u`, final item `i_g + h`; score `u · i`.
- Degree-sensitive edge pruning, re-drawn at the start of EVERY training epoch
  (`on_train_epoch_start`, MMRec's `pre_epoch_processing`): keep `(1 - dropout) |E|` training
  edges sampled without replacement with probability proportional to `1/sqrt(d_u d_i)`, then
  re-normalise the kept edges by their own degrees `1/sqrt(d'_u d'_i)` (both directions).
  Training propagates on the pruned graph, evaluation on the full normalised graph.
- Loss: BPR on the final representations + `reg_weight` x, for every modality m, BPR between
  the final user embedding and the projected features `W_m x_i + b_m`. There is no L2 term:
  in MMRec `reg_weight` weighs these modality BPR terms. The raw feature tables are
  fine-tuned (MMRec loads them with `freeze=False`); set `finetune_features=False` to freeze.
- Init: Xavier-uniform ID embeddings, PyTorch's default `nn.Linear` init for the projections.

Modality weights (MMRec: `mm_image_weight` x image graph + (1 - it) x text graph): with one
modality its graph is used alone; with two, the paper's TEXT role (weight `1 - mm_image_weight`)
goes to the modality named `text` if there is one, otherwise to the second configured
modality, and the IMAGE role (`mm_image_weight`) to the other (Amazon image+text: as MMRec;
ml100k text+kg: text 0.9, kg 0.1). With three or more, or whenever `modality_weights`
({name: weight}, all modalities) is given, those weights are used (default: equal).

Deliberate departures from MMRec: see the class docstring.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from src.data.formats import RecData
from src.data.graphs import cosine_topk, sym_norm, topk_adjacency
from src.data.sparse_utils import make_coo, safe_inverse
from src.models.base import Recommender, bpr_loss
from src.models.layers import SparseOp, propagate

log = logging.getLogger(__name__)


def modality_graph_weights(modalities: list[str], mm_image_weight: float,
                           modality_weights: dict[str, float] | None = None) -> dict[str, float]:
    """Weight of each modality's item-item graph (see the module docstring for the rule)."""
    if modality_weights is not None:
        given = dict(modality_weights)
        if set(given) != set(modalities):
            raise ValueError(f"FREEDOM modality_weights must name exactly the dataset's modalities "
                             f"{modalities}, got {sorted(given)}")
        if any(float(w) < 0 for w in given.values()):
            raise ValueError(f"FREEDOM modality_weights must be non-negative, got {given}")
        return {m: float(given[m]) for m in modalities}
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    if len(modalities) == 2:
        if not 0.0 <= mm_image_weight <= 1.0:
            raise ValueError(f"FREEDOM mm_image_weight must lie in [0, 1], got {mm_image_weight}")
        text = "text" if "text" in modalities else modalities[1]
        image = next(m for m in modalities if m != text)
        return {image: float(mm_image_weight), text: 1.0 - float(mm_image_weight)}
    return {m: 1.0 / len(modalities) for m in modalities}


def knn_normalized_adjacency(indices: Tensor, n: int) -> Tensor:
    """`D^-1/2 A D^-1/2` of the binary directed KNN graph `A[i, indices[i]] = 1`, D = row sums."""
    return sym_norm(topk_adjacency(indices, n))


def item_item_graph(graphs, modalities: list[str], weights: dict[str, float], knn_k: int,
                    include_self: bool) -> Tensor:
    """Σ_m w_m · normalised KNN graph of modality m, sparse `[n_items, n_items]` (cached)."""
    def lists(m: str) -> Tensor:
        if not include_self:
            return graphs.item_knn(m, knn_k)[0]
        return graphs.cached("item_knn_with_self", {"modality": m, "k": knn_k, "v": 1},
                             lambda: tuple(t.cpu() for t in cosine_topk(
                                 graphs.features(m).to(graphs.device), knn_k, exclude_self=False)))[0]

    def build() -> Tensor:
        n = graphs.data.n_items
        parts = [knn_normalized_adjacency(lists(m), n) * weights[m] for m in modalities]
        return sum(parts[1:], parts[0]).coalesce()

    params = {"k": knn_k, "include_self": include_self, "weights": [[m, weights[m]] for m in modalities],
              "v": 1}
    return graphs.cached("freedom_item_graph", params, build)


class FREEDOM(Recommender):
    """FREEDOM as described in the module docstring. Deliberate departures from MMRec:

    - KNN lists come from the data module's blocked exact top-k (`GraphStore.item_knn`, cached
      per dataset), never a dense n_items x n_items similarity; ties go to the lower index.
      MMRec's `torch.topk` on the dense similarity does NOT mask the diagonal, so each item is
      normally its own first neighbour (k - 1 true neighbours). `knn_include_self=True` (the
      default) reproduces that, via `cosine_topk(..., exclude_self=False)` through
      `GraphStore.cached`; `False` uses the shared self-excluded lists. An all-zero feature
      row has similarity 0 with every item here (MMRec would divide by a zero norm).
    - Modality roles generalised to any names and counts (module docstring); on Amazon
      image+text the weights are MMRec's.
    - Pruning draws with an exponential race (`topk(w / Exp(1))`), which is what
      `torch.multinomial(w, n, replacement=False)` does internally (identical draws under the
      same seed on the CPU) but without its 2^24-category limit. It uses torch's global RNG, so
      runs are repeatable under `seed_everything`.
    - Degrees use no 1e-7 epsilon (zero degrees map to 0); the feature projections are applied to
      the batch's items only (the loss and its gradients are the same as projecting all items);
      with `reg_weight = 0` the modality BPR terms are skipped instead of multiplied by zero.
    - Unused MMRec options are not exposed: `lambda_coeff`, `cf_model`, `weight_size` and
      `degree_ratio` are read by MMRec's FREEDOM but never used; `feat_embed_dim` must equal the
      ID embedding size (a user embedding is dotted with projected features), so it is tied to
      `embedding_dim`.
    """

    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, knn_k: int = 10,
                 knn_include_self: bool = True, mm_image_weight: float = 0.1,
                 modality_weights: dict[str, float] | None = None, n_mm_layers: int = 1,
                 n_ui_layers: int = 2, dropout: float = 0.8, reg_weight: float = 1e-4,
                 finetune_features: bool = True):
        super().__init__(data)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FREEDOM dropout (share of edges pruned) must lie in [0, 1), got {dropout}")
        self.modalities = list(data.features)
        self.n_mm_layers, self.n_ui_layers = n_mm_layers, n_ui_layers
        self.dropout, self.reg_weight = float(dropout), float(reg_weight)

        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.features = nn.ParameterDict({
            m: nn.Parameter(graphs.features(m).clone(), requires_grad=finetune_features)
            for m in self.modalities})
        self.proj = nn.ModuleDict({m: nn.Linear(self.features[m].shape[1], embedding_dim)
                                   for m in self.modalities})

        self.graph_weights = modality_graph_weights(self.modalities, mm_image_weight, modality_weights)
        log.info("FREEDOM item-item graph weights: %s", self.graph_weights)
        self.item_graph = SparseOp(item_item_graph(graphs, self.modalities, self.graph_weights,
                                                   knn_k, knn_include_self))
        self.full_adj = SparseOp(graphs.user_item_adjacency())

        # training edges (user, item) and their sampling weights 1/sqrt(d_u d_i)
        coo = graphs.train_csr().tocoo()
        edges = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("edge_weight", bipartite_sym_values(edges, self.n_users, self.n_items),
                             persistent=False)
        self.train_adj: SparseOp | None = None
        self._cache: tuple[Tensor, Tensor] | None = None

    # ---- degree-sensitive edge pruning ---------------------------------------------------
    def sample_pruned_adjacency(self) -> Tensor:
        """The normalised `[(U+I), (U+I)]` graph on a fresh degree-sensitive sample of edges."""
        n_keep = int(self.edges.shape[1] * (1.0 - self.dropout))
        # exponential race: the n_keep largest w / Exp(1) are a weighted draw without replacement
        race = self.edge_weight / torch.empty_like(self.edge_weight).exponential_(1.0)
        kept = self.edges[:, torch.topk(race, n_keep).indices]
        values = bipartite_sym_values(kept, self.n_users, self.n_items)
        users, items = kept[0], kept[1] + self.n_users
        n = self.n_users + self.n_items
        index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
        return make_coo(index, torch.cat([values, values]), (n, n))

    def on_train_epoch_start(self, epoch: int) -> None:
        self.train_adj = self.full_adj if self.dropout == 0.0 else SparseOp(self.sample_pruned_adjacency())

    # ---- model ---------------------------------------------------------------------------
    def propagate(self, adj: SparseOp) -> tuple[Tensor, Tensor]:
        h = propagate(self.item_graph, self.item_emb, self.n_mm_layers, readout="last")
        ego = torch.cat([self.user_emb, self.item_emb])
        out = propagate(adj, ego, self.n_ui_layers, readout="mean")
        return out[: self.n_users], out[self.n_users:] + h

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        if self.train_adj is None:  # called outside the trainer: draw a pruned graph now
            self.on_train_epoch_start(0)
        user_all, item_all = self.propagate(self.train_adj)
        u = user_all[users]
        terms = {"bpr": bpr_loss((u * item_all[pos]).sum(-1), (u * item_all[neg]).sum(-1))}
        if self.reg_weight:
            for m in self.modalities:
                p, n = self.proj[m](self.features[m][pos]), self.proj[m](self.features[m][neg])
                terms[f"bpr_{m}"] = self.reg_weight * bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return terms

    def prepare_eval(self) -> None:
        self._cache = self.propagate(self.full_adj)

    def end_eval(self) -> None:
        self._cache = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        return self._cache if self._cache is not None else self.propagate(self.full_adj)

    def full_scores(self, users: Tensor) -> Tensor:
        user_all, item_all = self.final_embeddings()
        return user_all[users] @ item_all.T


def bipartite_sym_values(edges: Tensor, n_users: int, n_items: int) -> Tensor:
    """`1/sqrt(d_u d_i)` for each (user, item) edge, degrees counted over `edges` themselves."""
    du = torch.bincount(edges[0], minlength=n_users).to(torch.float32)
    di = torch.bincount(edges[1], minlength=n_items).to(torch.float32)
    return safe_inverse(du, 0.5)[edges[0]] * safe_inverse(di, 0.5)[edges[1]]
