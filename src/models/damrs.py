"""DA-MRS (Xv et al., KDD 2024): denoising and aligning multimodal content and user feedback.

Follows MMRec's `src/models/damrs.py` (enoche/MMRec @ e775373; the same code as the authors'
XMUDM/DA-MRS `src/models/lightgcn.py`, i.e. DA-MRS on a LightGCN backbone).

Item-item graphs (fixed, built once from the training split and the raw features, cached):
* Denoised modal KNN graphs: an item pair is a candidate only if its cosine similarity is at least
  the mean of the full cosine matrix (self pairs included) in EVERY modality; each modality then
  links each item to its top `knn_k` candidates by that modality's similarity (the item itself,
  similarity 1, is normally one of them, as in MMRec). Binary, then D^-1/2 A D^-1/2 with row sums.
* Item-item behaviour graph (MMRec reads it from `item_graph_dict_2.npy`, written by the authors'
  `build_iib_graph.py --topk=2`): co-interaction counts over training users, pairs with a count
  below `min_co_count` = 2 dropped, each item keeping its `behaviour_k` = 2 most co-interacted
  items; plus self loops; binary (MMRec reads the counts but normalises a ones-valued matrix),
  then D^-1/2 A D^-1/2 with row sums.

Model: LightGCN (`n_ui_layers`, mean over layers) gives user and item embeddings u, i. Each item
graph propagates the ITEM ID embeddings `n_mm_layers` times (last layer): one view per modality
plus the behaviour view. Items are scored with i + mean(views); users with u. Features are used
only to build graphs (MMRec's unused `image_trs` / `text_trs` layers are left out).

Loss (MMRec's `calculate_loss`):
* Denoised BPR: for each triple the views give sigmoid(u . normalize(view_item)) for the
  positive and the negative; w_pos = clamp(mean_p * exp(-var_p)^2, 0, 1) (var unbiased over the
  views), w_neg = clamp(max_p - mean_n, 0, 1) where mean_p < mean_n (mean_n: one scalar over
  the batch and the views) and 0 elsewhere; loss = -mean(w_pos ln s(x_upi) + w_neg ln s(-x_upi)),
  weights detached.
* `neighbor_weight` * L_AI, neighbour discrimination over the batch's distinct items: in each
  view, softmax over all items of the cosine similarities; multi-view pseudo-positives = top
  `n_pseudo` (10) of (sum of the other views' softmaxes + 2 x own), single-view positives = the
  next top `n_pseudo` of the own softmax with those removed; InfoNCE at temperature `tau` = 0.2:
  -ln(S_mm / S_all + 1e-9) - ln(S_s / (S_all - S_mm) + 1e-9); averaged over items and views.
* `kl_weight` * L_AU: over the batch's distinct users x distinct items, p = sigmoid(u . normalize(i))
  and q = sigmoid(u . normalize(mean(views))), mean of KL(p||q) + KL(q||p) (Bernoulli).

Modalities: MMRec hard-codes image + text. Any number >= 1 works here: a pair is a modal
candidate when it passes the mean threshold in every modality, every modality gives a view, and
the pseudo-label rule "others + 2 x own" runs over all views (for image + text exactly MMRec's).

Departures from MMRec, all on purpose:
* The n_items x n_items cosine matrices are never formed: the mean of a cosine matrix is
  ||sum_i x_i/|x_i| ||^2 / n^2 (closed form), and the candidate top-k runs in row blocks. Ties
  are broken by the lower item index (torch.topk's choice is unspecified), for the behaviour
  graph too (its counts tie often with k = 2). MMRec zero-fills non-candidates and takes the
  top-k of the row, which would pick a non-candidate over a candidate only if a modality's mean
  cosine were negative; here only candidates are ever picked.
* The behaviour graph is computed from the training split through the graph cache (MMRec loads
  a file produced offline by a script that loops over all item pairs in Python).
* The symmetric Bernoulli KL is computed as (p - q)(logit p - logit q), which is algebraically
  KL(p||q) + KL(q||p) but cannot produce NaN when a sigmoid saturates; ln s(x) via logsigmoid.
* Pseudo-labels are picked under no_grad (they are indices; MMRec builds the softmaxes with
  autograd on but only uses their top-k positions), and the InfoNCE sums read the positives'
  exp-scores out of the full score matrix rather than recomputing the dot products.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.formats import RecData
from src.data.graphs import sym_norm
from src.data.knn import topk_lowest_index, unit_rows
from src.data.sparse_utils import binary_csr, identity_added, make_coo
from src.models.base import Recommender
from src.models.layers import SparseOp, propagate

GRAPH_VERSION = 1  # bump when a builder below changes its output (part of the cache key)


# --------------------------------------------------------------------------- graph builders

def mean_cosine(x: Tensor) -> float:
    """Mean of the full `[n, n]` cosine matrix of the rows of `x` (diagonal included), exactly,
    without forming it: mean_ij <x_i, x_j> / (|x_i||x_j|) = |sum_i x_i / |x_i||^2 / n^2."""
    s = unit_rows(x.double()).sum(0)
    return float(s @ s) / x.shape[0] ** 2


def denoised_knn(features: list[Tensor], k: int, chunk_size: int = 1024) -> list[Tensor]:
    """DA-MRS's denoised modal KNN graphs: one binary sparse `[n, n]` graph per modality.

    Candidates of item i: items j (i itself included) whose cosine with i is >= the mean cosine
    in every modality. Row i of modality m links i to its top-min(k, #candidates) candidates by
    modality m's cosine (ties: lower index). Computed in blocks of rows.
    """
    if not features:
        raise ValueError("denoised_knn: expected at least one feature matrix")
    n = features[0].shape[0]
    if any(x.shape[0] != n for x in features):
        raise ValueError(f"denoised_knn: feature matrices have {[x.shape[0] for x in features]} "
                         f"rows; expected the same number of items in every modality")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"denoised_knn: k must be a positive integer, got {k!r}")
    k = min(int(k), n)
    units = [unit_rows(x if x.dtype == torch.float64 else x.float()) for x in features]
    means = [mean_cosine(x) for x in features]
    rows_out: list[list[Tensor]] = [[] for _ in features]
    cols_out: list[list[Tensor]] = [[] for _ in features]
    for a in range(0, n, chunk_size):
        sims = [u[a:a + chunk_size] @ u.T for u in units]
        candidate = torch.ones_like(sims[0], dtype=torch.bool)
        for s, mean in zip(sims, means):
            candidate &= s >= mean
        for m, s in enumerate(sims):
            cols, vals = topk_lowest_index(s.masked_fill(~candidate, float("-inf")), k)
            keep = torch.isfinite(vals)                   # fewer than k candidates: drop the rest
            rows_out[m].append((torch.arange(a, a + s.shape[0], device=s.device)[:, None]
                                .expand_as(cols))[keep])
            cols_out[m].append(cols[keep])
    graphs = []
    for rows, cols in zip(rows_out, cols_out):
        idx = torch.stack([torch.cat(rows), torch.cat(cols)]).cpu()
        graphs.append(make_coo(idx, torch.ones(idx.shape[1]), (n, n)))
    return graphs


def co_interaction_topk(r: sp.spmatrix, k: int, min_count: int = 2,
                        chunk_size: int = 2048) -> Tensor:
    """Item-item behaviour graph of DA-MRS: sparse `[n_items, n_items]` of co-interaction counts.

    Count(i, j) = number of users who interacted with both i and j (i != j, binary R). Pairs with
    a count below `min_count` are dropped; each item keeps its top-k partners by count (ties:
    lower index); fewer if it has fewer. Directed (row i holds i's own list), values = counts.
    This is what the authors' `build_iib_graph.py --topk=k` stores in `item_graph_dict_<k>.npy`.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"co_interaction_topk: k must be a positive integer, got {k!r}")
    items = binary_csr(r, "co_interaction_topk interaction matrix").T.tocsr().astype(np.int64)
    users = items.T.tocsr()
    n = items.shape[0]
    rows_out, cols_out, vals_out = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for a in range(0, n, chunk_size):
        co = (items[a:a + chunk_size] @ users).tocoo()    # counts of the block's rows, [c, n]
        rows, cols, counts = co.row.astype(np.int64) + a, co.col.astype(np.int64), co.data
        keep = (cols != rows) & (counts >= min_count)
        rows, cols, counts = rows[keep], cols[keep], counts[keep]
        order = np.lexsort((cols, -counts, rows))         # by row, then count desc, then index
        rows, cols, counts = rows[order], cols[order], counts[order]
        starts = np.searchsorted(rows, rows, side="left")  # first position of each entry's row
        rank = np.arange(len(rows)) - starts
        keep = rank < k
        rows_out.append(rows[keep])
        cols_out.append(cols[keep])
        vals_out.append(counts[keep])
    idx = torch.from_numpy(np.vstack([np.concatenate(rows_out), np.concatenate(cols_out)]))
    return make_coo(idx, torch.from_numpy(np.concatenate(vals_out)).float(), (n, n))


def behaviour_adjacency(counts: Tensor) -> Tensor:
    """MMRec's `get_session_adj`: the top-k pattern (counts ignored) plus self loops, sym-normalised."""
    pattern = make_coo(counts.coalesce().indices(), torch.ones(counts._nnz()), tuple(counts.shape))
    return sym_norm(identity_added(pattern, 1.0))


def symmetric_bernoulli_kl(z_p: Tensor, z_q: Tensor) -> Tensor:
    """KL(p||q) + KL(q||p) for Bernoulli p = sigmoid(z_p), q = sigmoid(z_q), elementwise.

    Equal to (p - q)(logit p - logit q): the log terms of the two KLs pair up into the logits.
    """
    return (torch.sigmoid(z_p) - torch.sigmoid(z_q)) * (z_p - z_q)


# --------------------------------------------------------------------------- model

class DAMRS(Recommender):
    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_ui_layers: int = 2,
                 n_mm_layers: int = 1, knn_k: int = 10, behaviour_k: int = 2, min_co_count: int = 2,
                 kl_weight: float = 1.0, neighbor_weight: float = 1e-3, n_pseudo: int = 10,
                 tau: float = 0.2):
        super().__init__(data)
        if n_pseudo < 1 or 2 * n_pseudo > self.n_items:
            raise ValueError(f"DAMRS: n_pseudo must be >= 1 and 2 * n_pseudo <= n_items "
                             f"({self.n_items}), got {n_pseudo}")
        self.n_ui_layers, self.n_mm_layers = n_ui_layers, n_mm_layers
        self.kl_weight, self.neighbor_weight = kl_weight, neighbor_weight
        self.n_pseudo, self.tau = n_pseudo, tau
        self.modalities = list(data.features)

        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.adj = SparseOp(graphs.user_item_adjacency())

        def build_modal() -> list[Tensor]:
            feats = [graphs.features(m).to(graphs.device) for m in self.modalities]
            return [sym_norm(g) for g in denoised_knn(feats, knn_k)]
        modal = graphs.cached("damrs_modal_knn", {"modalities": self.modalities, "k": knn_k,
                                                  "v": GRAPH_VERSION}, build_modal)
        behaviour = graphs.cached(
            "damrs_behaviour", {"k": behaviour_k, "min_count": min_co_count, "v": GRAPH_VERSION},
            lambda: behaviour_adjacency(co_interaction_topk(graphs.train_csr(), behaviour_k, min_co_count)))
        # one item-item operator per view: the modalities in dataset order, then behaviour
        self.views = nn.ModuleList([SparseOp(g) for g in modal] + [SparseOp(behaviour)])
        self._cache: tuple[Tensor, Tensor] | None = None

    # ---- embeddings -----------------------------------------------------------------------
    def embeddings(self) -> tuple[Tensor, Tensor, list[Tensor]]:
        """LightGCN users and items, and the item views (ID embeddings on each item graph)."""
        out = propagate(self.adj, torch.cat([self.user_emb, self.item_emb]), self.n_ui_layers, "mean")
        views = [propagate(op, self.item_emb, self.n_mm_layers, "last") for op in self.views]
        return out[: self.n_users], out[self.n_users:], views

    # ---- losses ---------------------------------------------------------------------------
    @torch.no_grad()
    def feedback_weights(self, u: Tensor, pos_views: list[Tensor], neg_views: list[Tensor]) -> tuple[Tensor, Tensor]:
        """MMRec's `get_weight_modal`: (w_pos, w_neg) per triple, from the views' agreement."""
        p = torch.sigmoid(torch.stack([(u * F.normalize(v, dim=1)).sum(1) for v in pos_views]))
        n = torch.sigmoid(torch.stack([(u * F.normalize(v, dim=1)).sum(1) for v in neg_views]))
        p_mean, n_mean = p.mean(0), n.mean()
        w_pos = (p_mean * torch.exp(-p.var(0)) ** 2).clamp(0, 1)
        w_neg = ((p.max(0).values - n_mean) * (p_mean < n_mean)).clamp(0, 1)
        return w_pos, w_neg

    @torch.no_grad()
    def pseudo_labels(self, items: Tensor, views: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per view, (multi-view positives, single-view positives) `[len(items), n_pseudo]`."""
        probs = [F.softmax(F.normalize(v[items], dim=1) @ F.normalize(v, dim=1).T, dim=1) for v in views]
        total = sum(probs)
        out = []
        for own in probs:
            multi = torch.topk(total + own, self.n_pseudo, dim=1).indices   # others + 2 x own
            single = torch.topk(own.scatter(1, multi, 0.0), self.n_pseudo, dim=1).indices
            out.append((multi, single))
        return out

    def neighbour_discrimination(self, anchor: Tensor, view: Tensor, multi: Tensor, single: Tensor) -> Tensor:
        """MMRec's `neighbor_discrimination`, mean over the anchors."""
        scores = torch.exp(F.normalize(anchor, dim=1) @ F.normalize(view, dim=1).T / self.tau)
        total = scores.sum(1)
        s_multi = scores.gather(1, multi).sum(1)
        s_single = scores.gather(1, single).sum(1)
        return (-torch.log(s_multi / total + 1e-9) - torch.log(s_single / (total - s_multi) + 1e-9)).mean()

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        user_all, item_all, views = self.embeddings()
        content = torch.stack(views).mean(0)
        batch_users, batch_items = torch.unique(users), torch.unique(torch.cat([pos, neg]))

        u = user_all[users]
        w_pos, w_neg = self.feedback_weights(u, [v[pos] for v in views], [v[neg] for v in views])
        items = item_all + content
        x = (u * items[pos]).sum(1) - (u * items[neg]).sum(1)
        terms = {"bpr": -(F.logsigmoid(x) * w_pos + F.logsigmoid(-x) * w_neg).mean()}

        if self.neighbor_weight:
            labels = self.pseudo_labels(batch_items, views)
            ai = sum(self.neighbour_discrimination(v[batch_items], v, multi, single)
                     for v, (multi, single) in zip(views, labels)) / len(views)
            terms["cl"] = self.neighbor_weight * ai
        if self.kl_weight:
            bu = user_all[batch_users]
            z_behaviour = bu @ F.normalize(item_all[batch_items], dim=1).T
            z_content = bu @ F.normalize(content[batch_items], dim=1).T
            terms["kl"] = self.kl_weight * symmetric_bernoulli_kl(z_behaviour, z_content).mean()
        return terms

    # ---- evaluation -----------------------------------------------------------------------
    def scoring_embeddings(self) -> tuple[Tensor, Tensor]:
        users, items, views = self.embeddings()
        return users, items + torch.stack(views).mean(0)

    def prepare_eval(self) -> None:
        with torch.no_grad():
            self._cache = self.scoring_embeddings()

    def end_eval(self) -> None:
        self._cache = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        return self._cache if self._cache is not None else self.scoring_embeddings()

    def full_scores(self, users: Tensor) -> Tensor:
        with torch.no_grad():
            user_all, item_all = self.final_embeddings()
        return user_all[users] @ item_all.T
