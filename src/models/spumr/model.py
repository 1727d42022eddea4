"""SPUMR (Wu et al., arXiv 2601.19198): the model, its losses (Eqs. 10-12) and diagnostics.

Specification: ../shared/SPUMR.md. Per modality m, a linear projection of the frozen item
features goes through the Modality Similarity Graph (Eqs. 1-3) and the Collaborative Similarity
Graph (Eqs. 4-5) (`encoder.py`, `operators.py`); UPA (Eqs. 6-9, `upa.py`) turns each refined
representation into a Gaussian, samples it in training (mu at evaluation) and fuses the
modalities with a Top-K gate; an optional ID branch is added (SPUMR.md §5, option B1 by
default). Scores are inner products; the loss is BPR + lambda_C InfoNCE + lambda_KL KL +
lambda_U uncertainty.

Departures and choices (all switches, see conf/model/spumr.yaml): graphs from raw features
(choice A.3); directed KNN lists; self-inclusive row-normalised CSG (4b); last-layer readout;
dense softmax gate (K = 2); plain ID embeddings added; KL and L_U over the batch's distinct
users plus its distinct items (positives and negatives), the two parts added. The graph work
runs once at construction; the default fast path precomputes the propagated raw features
(see `encoder.py` for why it equals the literal path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.formats import RecData
from src.models.base import Recommender, bpr_loss
from src.models.layers import SparseOp, propagate
from src.models.spumr.encoder import ModalEncoder
from src.models.spumr.operators import (OperatorChain, Propagation, csg_operator, msg_operator,
                                        profile_operator)
from src.models.spumr.upa import GaussianHeads, TopKGate, kl_loss, reparameterise, uncertainty_loss

IdBranch = Literal["none", "mf", "lightgcn"]


@dataclass
class Fused:
    """One side's UPA output for some rows: the fused z, and per modality mu, log sigma^2, z."""
    z: Tensor
    mus: list[Tensor]
    logvars: list[Tensor]
    gates: Tensor | None   # [n, |M|]; None without UPA


def build_chains(graphs, modalities: list[str], k: int, n_layers: int, csg_layers: int, readout: str,
                 use_msg: bool, use_csg: bool, csg_norm: str, csg_alpha: str, knn_symmetric: bool):
    """Per modality, the user chain (profile, MSG_U, CSG_U) and item chain (MSG_I, CSG_I).

    A switched-off MSG or CSG step is left out, i.e. it is the identity. The profile operator
    and the CSG steps are shared by the modalities (one module, registered in several chains).
    """
    profile = Propagation(profile_operator(graphs.train_csr()), 1)                       # Eq. 1
    csg_u = csg_i = None
    if use_csg:
        csg_u = Propagation(csg_operator(graphs.user_jaccard(k), csg_norm, csg_alpha), csg_layers, readout)  # Eq. 4
        csg_i = Propagation(csg_operator(graphs.item_jaccard(k), csg_norm, csg_alpha), csg_layers, readout)  # Eq. 5
    users, items = {}, {}
    for m in modalities:
        u_steps, i_steps = [profile], []
        if use_msg:
            u_steps.append(Propagation(msg_operator(graphs.user_knn(m, k)[0], knn_symmetric), n_layers, readout))  # Eq. 2
            i_steps.append(Propagation(msg_operator(graphs.item_knn(m, k)[0], knn_symmetric), n_layers, readout))  # Eq. 3
        if use_csg:
            u_steps.append(csg_u)
            i_steps.append(csg_i)
        users[m], items[m] = OperatorChain(u_steps), OperatorChain(i_steps)
    return users, items


class SPUMR(Recommender):
    """SPUMR for any number of modalities (`modalities` picks and orders them; default all)."""

    requires_modalities = True

    def __init__(self, data: RecData, graphs, embedding_dim: int = 64, n_layers: int = 3,
                 csg_layers: int | None = None, knn_k: int = 10, knn_symmetric: bool = False,
                 readout: str = "last", csg_norm: str = "self_row", csg_alpha: str = "sum",
                 use_msg: bool = True, use_csg: bool = True, use_upa: bool = True,
                 gate_topk: int = 2, gate_order: str = "mask_then_softmax", gate_input: str = "z",
                 separate_gates: bool = False, head: str = "linear", shared_heads: bool = False,
                 logvar_bias: float = 0.0, id_branch: IdBranch = "mf", id_layers: int = 3,
                 tau: float = 0.2, lambda_c: float = 0.01, lambda_kl: float = 1e-3, lambda_u: float = 1e-3,
                 cl_mode: str = "inbatch", dim_reduction: str = "sum", u_target: str = "variance",
                 freeze_features: bool = True, path: str = "auto", modalities: list[str] | None = None,
                 chunk_columns: int = 512):
        super().__init__(data)
        self.modalities = list(modalities) if modalities else list(data.features)
        unknown = [m for m in self.modalities if m not in data.features]
        if unknown:
            raise ValueError(f"SPUMR modalities {unknown} are not in dataset '{data.name}', which has "
                             f"{list(data.features)}")
        for name, value, allowed in (("id_branch", id_branch, ("none", "mf", "lightgcn")),
                                     ("gate_input", gate_input, ("z", "mu")),
                                     ("cl_mode", cl_mode, ("inbatch", "symmetric", "align"))):
            if value not in allowed:
                raise ValueError(f"SPUMR {name} must be one of {allowed}, got {value!r}")
        if tau <= 0:
            raise ValueError(f"SPUMR tau must be positive, got {tau}")
        self.use_upa, self.id_branch, self.gate_input, self.cl_mode = use_upa, id_branch, gate_input, cl_mode
        self.tau, self.lambda_c, self.lambda_kl, self.lambda_u = tau, lambda_c, lambda_kl, lambda_u
        self.dim_reduction, self.u_target = dim_reduction, u_target

        users, items = build_chains(graphs, self.modalities, knn_k, n_layers,
                                    n_layers if csg_layers is None else csg_layers, readout,
                                    use_msg, use_csg, csg_norm, csg_alpha, knn_symmetric)
        self.encoder = ModalEncoder({m: graphs.features(m) for m in self.modalities}, users, items,
                                    embedding_dim, freeze_features, path, chunk_columns)
        if use_upa:  # Eqs. 6 and 8
            self.heads = GaussianHeads(self.modalities, embedding_dim, head, shared_heads, logvar_bias)
            self.user_gate = TopKGate(len(self.modalities), embedding_dim, gate_topk, gate_order)
            self.item_gate = (TopKGate(len(self.modalities), embedding_dim, gate_topk, gate_order)
                              if separate_gates else self.user_gate)
        if id_branch != "none":  # SPUMR.md §5, options B1 (mf) and B2 (lightgcn)
            self.user_id = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_dim)))
            self.item_id = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_dim)))
        if id_branch == "lightgcn":
            self.id_adj, self.id_layers = SparseOp(graphs.user_item_adjacency()), int(id_layers)
        self._eval: tuple[Tensor, Tensor] | None = None
        self._stats: dict[str, float] = {}
        self._hists: dict[str, Tensor] = {}

    @property
    def path(self) -> str:
        return self.encoder.path

    # ---- representations -------------------------------------------------------------------
    def fuse(self, h: dict[str, Tensor], gate: TopKGate | None, sample: bool) -> Fused:
        """Eqs. 6 and 8: Gaussians, z (sampled or mu) and the gated sum; without UPA, the mean."""
        hs = [h[m] for m in self.modalities]
        if not self.use_upa:  # Table 3 "w/o UPA": deterministic modal representations, mean-fused
            return Fused(torch.stack(hs).mean(0), [], [], None)
        mus, logvars = zip(*(self.heads(m, x) for m, x in zip(self.modalities, hs)))
        zs = [reparameterise(mu, lv) for mu, lv in zip(mus, logvars)] if sample else list(mus)
        g = gate(zs if self.gate_input == "z" else list(mus))
        z = sum(g[:, j:j + 1] * zj for j, zj in enumerate(zs))       # z_n = sum_m g_n^m z_n^m
        return Fused(z, list(mus), list(logvars), g)

    def id_embeddings(self, user_rows: Tensor | None, item_rows: Tensor | None) -> tuple[Tensor, Tensor] | None:
        if self.id_branch == "none":
            return None
        u, i = self.user_id, self.item_id
        if self.id_branch == "lightgcn":  # LightGCN over the ID tables, every step (as LightGCN)
            out = propagate(self.id_adj, torch.cat([u, i]), self.id_layers, readout="mean")
            u, i = out[: self.n_users], out[self.n_users:]
        return (u if user_rows is None else u[user_rows]), (i if item_rows is None else i[item_rows])

    def represent(self, user_rows: Tensor | None, item_rows: Tensor | None, sample: bool) -> tuple[Fused, Fused]:
        """Final user and item representations for the given rows (None = all)."""
        hu, hi = self.encoder(user_rows, item_rows)
        fu = self.fuse(hu, getattr(self, "user_gate", None), sample)
        fi = self.fuse(hi, getattr(self, "item_gate", None), sample)
        ids = self.id_embeddings(user_rows, item_rows)
        if ids is not None:
            fu.z, fi.z = fu.z + ids[0], fi.z + ids[1]
        return fu, fi

    # ---- training ----------------------------------------------------------------------------
    def contrastive(self, u: Tensor, p: Tensor) -> Tensor:
        """Eq. 11: in-batch InfoNCE on cosine similarities / tau (other positives are negatives)."""
        u, p = F.normalize(u, dim=-1), F.normalize(p, dim=-1)
        if self.cl_mode == "align":
            return (u - p).pow(2).sum(-1).mean()
        logits = u @ p.T / self.tau
        target = torch.arange(len(u), device=u.device)
        loss = F.cross_entropy(logits, target)
        return loss + F.cross_entropy(logits.T, target) if self.cl_mode == "symmetric" else loss

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        """Eq. 12 as named weighted terms. Always samples z (training objective).

        Representations (and their noise) are computed once per distinct batch user and
        distinct batch item; eps is drawn for those rows only, users first, in both paths.
        """
        uu, u_at = users.unique(return_inverse=True)
        ii, i_at = torch.cat([pos, neg]).unique(return_inverse=True)
        fu, fi = self.represent(uu, ii, sample=True)
        u, p, n = fu.z[u_at], fi.z[i_at[: len(pos)]], fi.z[i_at[len(pos):]]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),                  # Eq. 10
                 "cl": self.lambda_c * self.contrastive(u, p)}                       # Eq. 11
        if self.use_upa:
            kl = (kl_loss(fu.mus, fu.logvars, self.dim_reduction)                    # Eq. 7
                  + kl_loss(fi.mus, fi.logvars, self.dim_reduction))
            unc = (uncertainty_loss(fu.gates, fu.logvars, self.dim_reduction, self.u_target)   # Eq. 9
                   + uncertainty_loss(fi.gates, fi.logvars, self.dim_reduction, self.u_target))
            terms["kl"], terms["u"] = self.lambda_kl * kl, self.lambda_u * unc
        return terms

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_eval(self) -> None:
        """All users' and items' representations from mu (no sampling), and the UPA statistics."""
        fu, fi = self.represent(None, None, sample=False)
        self._eval = (fu.z, fi.z)
        self._stats, self._hists = self._uncertainty_stats(fu, fi) if self.use_upa else ({}, {})

    def end_eval(self) -> None:
        self._eval = None

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        # the fused representations from mu (plus the ID branch), as scored at evaluation
        if self._eval is not None:
            return self._eval
        fu, fi = self.represent(None, None, sample=False)
        return fu.z, fi.z

    def full_scores(self, users: Tensor) -> Tensor:
        if self._eval is None:
            with torch.no_grad():
                fu, fi = self.represent(users, None, sample=False)
            return fu.z @ fi.z.T
        zu, zi = self._eval
        return zu[users] @ zi.T

    def eval_stats(self) -> dict[str, float]:
        return dict(self._stats)

    def eval_histograms(self) -> dict[str, Tensor]:
        return dict(self._hists)

    def _uncertainty_stats(self, fu: Fused, fi: Fused) -> tuple[dict[str, float], dict[str, Tensor]]:
        """Gate weight and sigma (mean over dims) per entity and modality; their correlation."""
        stats, hists = {}, {}
        for j, m in enumerate(self.modalities):
            per_side = {}
            for side, f in (("user", fu), ("item", fi)):
                g = f.gates[:, j].float()
                s = torch.exp(0.5 * f.logvars[j].float()).mean(-1)
                per_side[side] = (g, s)
                stats[f"gate/{m}_{side}_mean"] = float(g.mean())
                stats[f"sigma/{m}_{side}_mean"] = float(s.mean())
                stats[f"corr/{m}_{side}"] = pearson(s, g)
                hists[f"gate/{m}_{side}"], hists[f"sigma/{m}_{side}"] = g.cpu(), s.cpu()
            stats[f"gate/{m}_mean"] = float(torch.cat([per_side["user"][0], per_side["item"][0]]).mean())
            stats[f"sigma/{m}_mean"] = float(torch.cat([per_side["user"][1], per_side["item"][1]]).mean())
        return stats, hists


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two vectors; NaN when either is constant."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = x.norm() * y.norm()
    return float((x * y).sum() / denom) if float(denom) > 0 else float("nan")
