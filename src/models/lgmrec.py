"""LGMRec (Guo et al., AAAI 2024): local and global graph learning for multimodal recommendation.

Follows MMRec's `src/models/lgmrec.py` (enoche/MMRec @ e775373), which is the authors' code.

* Collaborative graph embedding (CGE): LightGCN on the ID embeddings, `n_ui_layers` layers on the
  normalised user-item graph, mean over layers 0..L (`n_ui_layers=0` is MMRec's `cf_model: mf`).
* Local modal graph embedding (MGE), per modality m: items get `X_m W_m` (a bias-free learnable
  projection of the frozen raw features), users the mean of that over their training items
  (SPUMR's Eq. 1 on projected features); the two are propagated `n_mm_layers` times on the same
  normalised user-item graph and the last layer is kept. Local = CGE + sum_m normalize(MGE_m).
* Global hypergraph embedding (GHE), per modality: item-hyperedge logits `X_m V_m`
  (`V_m` is `[d_m, hyper_num]`), user logits = the SUM of their training items' logits; both go
  through a Gumbel-softmax with temperature `tau` = 0.2 (soft, rows sum to 1) and dropout with
  keep probability `keep_rate`; then `n_hyper_layer` rounds of item -> hyperedge -> item/user
  message passing carry the CGE item embeddings. Final = local + alpha * normalize(sum_m GHE_m).
* Loss: BPR on the final embeddings + `cl_weight` * an InfoNCE between the hypergraph embeddings
  of two modalities (users of the batch against all users, positive items against all items;
  summed over the batch, not averaged, as MMRec) + `reg_weight` * MMRec's EmbLoss on the batch's
  final embeddings.

Frozen: the raw features. Learnt: user/item ID embeddings, W_m, V_m.

Modalities: MMRec hard-codes image + text. Here any number >= 1 is accepted: MGE and GHE are
summed over all of them; the contrastive term runs over every ordered pair (a, b), a before b in
the dataset's modality order (emb1 = a, emb2 and its negatives = b), which for two modalities is
exactly MMRec's (image, text) term when the dataset lists image first. With one modality there
is no contrastive term (MMRec would fall back to CGE only and then fail in its loss).

Departures from MMRec, all on purpose:
* Evaluation computes the embeddings once per pass (`prepare_eval`) instead of once per
  4,096-user batch, so one Gumbel draw serves every evaluated user of the pass.
  MMRec keeps the Gumbel noise at evaluation time (its `full_sort_predict` runs the same
  `forward`); `eval_gumbel_noise=True` (default) does the same, `False` uses the noise-free
  softmax(logits / tau) for a deterministic ranking.
* Users without training items get a zero modal profile (MMRec divides by deg + 1e-7, which
  gives the same zero); the InfoNCE uses logsumexp instead of log(exp / sum exp) (same value).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, bpr_loss, l2_reg
from src.models.layers import SparseOp, propagate


class LGMRec(Recommender):
    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_ui_layers: int = 2,
                 n_mm_layers: int = 2, n_hyper_layer: int = 1, hyper_num: int = 4,
                 keep_rate: float = 0.5, alpha: float = 0.3, cl_weight: float = 1e-4,
                 reg_weight: float = 1e-6, tau: float = 0.2, eval_gumbel_noise: bool = True):
        super().__init__(data)
        if n_hyper_layer < 1:
            raise ValueError(f"LGMRec: n_hyper_layer must be >= 1, got {n_hyper_layer}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"LGMRec: keep_rate must lie in (0, 1], got {keep_rate}")
        self.n_ui_layers, self.n_mm_layers, self.n_hyper_layer = n_ui_layers, n_mm_layers, n_hyper_layer
        self.keep_rate, self.alpha, self.tau = keep_rate, alpha, tau
        self.cl_weight, self.reg_weight = cl_weight, reg_weight
        self.eval_gumbel_noise = eval_gumbel_noise
        self.modalities = list(data.features)

        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        self.proj = nn.ParameterDict()    # W_m: raw features -> embedding space (no bias)
        self.hyper = nn.ParameterDict()   # V_m: raw features -> hyperedge logits
        for i, m in enumerate(self.modalities):
            x = graphs.features(m)
            self.register_buffer(f"feat_{i}", x, persistent=False)  # frozen, never saved
            self.proj[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(x.shape[1], embedding_dim)))
            self.hyper[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(x.shape[1], hyper_num)))

        self.adj = SparseOp(graphs.user_item_adjacency())   # D^-1/2 A D^-1/2, users first
        self.inter = SparseOp(graphs.train_matrix())        # binary R [n_users, n_items]
        deg = torch.from_numpy(graphs.train_csr().getnnz(axis=1)).float()
        self.register_buffer("inv_user_deg", torch.where(deg > 0, 1.0 / deg.clamp_min(1), 0.0)[:, None],
                             persistent=False)
        self._cache: tuple[Tensor, Tensor] | None = None

    def features(self, i: int) -> Tensor:
        return getattr(self, f"feat_{i}")

    # ---- the three embeddings -------------------------------------------------------------
    def user_modal_profile(self, item_feats: Tensor) -> Tensor:
        """Each user's mean of `item_feats` over their training items, `[n_users, d]`."""
        return self.inter(item_feats) * self.inv_user_deg

    def collaborative(self) -> Tensor:
        """CGE: LightGCN over users then items, mean of layers 0..n_ui_layers."""
        return propagate(self.adj, torch.cat([self.user_emb, self.item_emb]), self.n_ui_layers, "mean")

    def modal(self, i: int) -> Tensor:
        """MGE of modality i: projected item features and user means, propagated (last layer)."""
        item_feats = self.features(i) @ self.proj[self.modalities[i]]
        x = torch.cat([self.user_modal_profile(item_feats), item_feats])
        return propagate(self.adj, x, self.n_mm_layers, "last")

    def hyperedge_assignments(self, i: int, noise: bool) -> tuple[Tensor, Tensor]:
        """Soft (user, item) -> hyperedge assignments of modality i, rows summing to 1."""
        item_logits = self.features(i) @ self.hyper[self.modalities[i]]
        user_logits = self.inter(item_logits)     # sum (not mean) over the user's items, as MMRec
        if noise:
            return (F.gumbel_softmax(user_logits, self.tau, hard=False, dim=1),
                    F.gumbel_softmax(item_logits, self.tau, hard=False, dim=1))
        return F.softmax(user_logits / self.tau, dim=1), F.softmax(item_logits / self.tau, dim=1)

    def hypergraph(self, user_h: Tensor, item_h: Tensor, item_cge: Tensor) -> tuple[Tensor, Tensor]:
        """`n_hyper_layer` rounds of item -> hyperedge -> (item, user) passing of the CGE items."""
        items, users = item_cge, item_cge
        for _ in range(self.n_hyper_layer):
            edges = item_h.T @ items              # [hyper_num, d]
            items, users = item_h @ edges, user_h @ edges
        return users, items

    def embeddings(self, training: bool) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """Final user and item embeddings, and per modality the (user, item) GHE parts."""
        cge = self.collaborative()
        item_cge = cge[self.n_users:]
        local, ghe, parts = cge, 0.0, []
        drop = 1.0 - self.keep_rate
        for i in range(len(self.modalities)):
            local = local + F.normalize(self.modal(i), dim=1)
            user_h, item_h = self.hyperedge_assignments(i, noise=training or self.eval_gumbel_noise)
            user_h = F.dropout(user_h, drop, training=training)
            item_h = F.dropout(item_h, drop, training=training)
            users, items = self.hypergraph(user_h, item_h, item_cge)
            parts.append((users, items))
            ghe = ghe + torch.cat([users, items])
        final = local + self.alpha * F.normalize(ghe, dim=1)
        return final[: self.n_users], final[self.n_users:], parts

    # ---- losses ---------------------------------------------------------------------------
    def info_nce(self, anchor: Tensor, positive: Tensor, candidates: Tensor) -> Tensor:
        """MMRec's `ssl_triple_loss`: sum over rows of -log softmax_j(cos(a, c_j)/tau) at the
        positive, the candidates being every row of `candidates` (the positive among them)."""
        a, p, c = F.normalize(anchor, dim=1), F.normalize(positive, dim=1), F.normalize(candidates, dim=1)
        return (torch.logsumexp(a @ c.T / self.tau, dim=1) - (a * p).sum(1) / self.tau).sum()

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        user_all, item_all, parts = self.embeddings(training=True)
        u, p, n = user_all[users], item_all[pos], item_all[neg]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.cl_weight and len(parts) > 1:
            cl = sum(self.info_nce(ua[users], ub[users], ub) + self.info_nce(ia[pos], ib[pos], ib)
                     for (ua, ia), (ub, ib) in itertools.combinations(parts, 2))
            terms["cl"] = self.cl_weight * cl
        if self.reg_weight:
            terms["reg"] = self.reg_weight * l2_reg(u, p, n)
        return terms

    # ---- evaluation -----------------------------------------------------------------------
    def prepare_eval(self) -> None:
        with torch.no_grad():
            users, items, _ = self.embeddings(training=False)
        self._cache = (users, items)

    def end_eval(self) -> None:
        self._cache = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        if self._cache is not None:
            return self._cache
        users, items, _ = self.embeddings(training=False)
        return users, items

    def full_scores(self, users: Tensor) -> Tensor:
        with torch.no_grad():
            user_all, item_all = self.final_embeddings()
        return user_all[users] @ item_all.T
