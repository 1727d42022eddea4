"""SPUMR Eqs. 6-9: Uncertainty-aware Preference Aggregation (UPA).

Each refined modal representation h^{m,c} is read as a Gaussian N(mu^m, diag(sigma^m)^2)
(Eq. 6), pulled towards N(0, I) by a KL term (Eq. 7); a Top-K gate over the concatenated
modal samples weighs the modalities (Eq. 8) and an uncertainty term penalises weight put on
high-variance modalities (Eq. 9). Reference for the forms: EUAR's `MoE.py` (SPUMR.md §4).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GateOrder = Literal["mask_then_softmax", "softmax_then_mask"]
DimReduction = Literal["sum", "mean"]


def xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    """`nn.Linear` with Xavier-uniform weights and zero bias (the paper's Xavier initialisation)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _head(dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return xavier_linear(dim, dim)
    if kind == "mlp":
        return nn.Sequential(xavier_linear(dim, dim), nn.ReLU(), xavier_linear(dim, dim))
    raise ValueError(f"head must be 'linear' or 'mlp', got {kind!r}")


class GaussianHeads(nn.Module):
    """Eq. 6: mu^m = f_mu^m(h^{m,c}), log(sigma^m)^2 = f_sigma^m(h^{m,c}).

    One (f_mu, f_sigma) pair per modality (EUAR: every expert owns its heads), shared by users
    and items; `shared=True` uses one pair for all modalities (the literal "two MLPs").
    `logvar_bias` initialises f_sigma's output bias (0 gives sigma = 1 where the input is 0).
    """

    def __init__(self, modalities: list[str], dim: int, kind: str = "linear", shared: bool = False,
                 logvar_bias: float = 0.0):
        super().__init__()
        names = ["shared"] if shared else list(modalities)
        self.shared = shared
        self.mu = nn.ModuleDict({m: _head(dim, kind) for m in names})
        self.logvar = nn.ModuleDict({m: _head(dim, kind) for m in names})
        for head in self.logvar.values():
            last = head if isinstance(head, nn.Linear) else head[-1]
            nn.init.constant_(last.bias, float(logvar_bias))

    def forward(self, modality: str, h: Tensor) -> tuple[Tensor, Tensor]:
        key = "shared" if self.shared else modality
        return self.mu[key](h), self.logvar[key](h)


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I), sigma = exp(logvar / 2) (torch's global RNG)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _reduce_dims(x: Tensor, how: DimReduction) -> Tensor:
    if how == "sum":
        return x.sum(-1)
    if how == "mean":
        return x.mean(-1)
    raise ValueError(f"dim_reduction must be 'sum' or 'mean', got {how!r}")


def kl_loss(mus: list[Tensor], logvars: list[Tensor], dim_reduction: DimReduction = "sum") -> Tensor:
    """Eq. 7: (1/|M|) sum_m (1/|B|) sum_n 1/2 sum_k (mu^2 + sigma^2 - log sigma^2 - 1).

    The closed-form KL(N(mu, sigma^2) || N(0, I)); summed over dimensions, averaged over the
    entities and the modalities (EUAR's `KL_loss` and `MoE.forward` reductions).
    """
    per_modality = [_reduce_dims(0.5 * (mu.pow(2) + lv.exp() - lv - 1.0), dim_reduction).mean()
                    for mu, lv in zip(mus, logvars)]
    return torch.stack(per_modality).mean()


def uncertainty_loss(gates: Tensor, logvars: list[Tensor], dim_reduction: DimReduction = "sum",
                     target: Literal["variance", "std"] = "variance") -> Tensor:
    """Eq. 9: (1/|B|) sum_n sum_m g_n^m sum_k (sigma_{n,k}^m)^2 (no stop-gradient, as EUAR).

    `gates` is `[n, |M|]`; `target="std"` uses sigma instead of sigma^2.
    """
    if target not in ("variance", "std"):
        raise ValueError(f"u_target must be 'variance' or 'std', got {target!r}")
    scale = 1.0 if target == "variance" else 0.5
    spread = torch.stack([_reduce_dims(torch.exp(scale * lv), dim_reduction) for lv in logvars], -1)
    return (gates * spread).sum(-1).mean()


class TopKGate(nn.Module):
    """Eq. 8: a = W_g [z^1 || ... || z^|M|] + b_g, then a Top-K selection of the |M| weights.

    `mask_then_softmax` (8a, Shazeer): non-top-K logits set to -inf, then softmax; weights sum
    to 1. With K = 1 the weights are one-hot and constant in W_g: the gate gets no gradient.
    `softmax_then_mask` (8b, EUAR's order): softmax, then the non-top-K weights zeroed without
    renormalising (weights sum to the kept mass, < 1 when K < |M|); the gate stays trainable.
    K >= |M| is the dense softmax either way.
    """

    def __init__(self, n_experts: int, dim: int, top_k: int = 2, order: GateOrder = "mask_then_softmax"):
        super().__init__()
        if order not in ("mask_then_softmax", "softmax_then_mask"):
            raise ValueError(f"gate_order must be 'mask_then_softmax' or 'softmax_then_mask', got {order!r}")
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"gate_topk must be a positive integer, got {top_k!r}")
        self.linear = xavier_linear(n_experts * dim, n_experts)
        self.top_k, self.order, self.n_experts = min(int(top_k), n_experts), order, n_experts

    def forward(self, experts: list[Tensor]) -> Tensor:
        logits = self.linear(torch.cat(experts, dim=-1))
        if self.top_k >= self.n_experts:
            return F.softmax(logits, dim=-1)
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(-1, logits.topk(self.top_k, dim=-1).indices, True)
        if self.order == "mask_then_softmax":
            return F.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
        return F.softmax(logits, dim=-1) * keep

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, order={self.order}"
