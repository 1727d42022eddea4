"""SPUMR Eqs. 1-5: the fixed propagation operators, built once from `GraphStore` graphs.

Everything here is linear and static, so one side (users or items) and one modality reduce to
a single linear operator O applied to the item-level input X (projected or raw features):

    items:  O_I^m = C_I^L  M_I^{m,L}              (Eq. 3, then Eq. 5)
    users:  O_U^m = C_U^L  M_U^{m,L}  D_U^-1 R    (Eq. 1, then Eq. 2, then Eq. 4)

where `A^L` stands for the readout of L propagation layers (the last layer, or the mean of
layers 0..L). `OperatorChain` holds such a product as `SparseOp` steps. Builders keep the
dtype of their inputs (float64 in, float64 out) so the tests can check them tightly.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from src.data.graphs import row_normalize, sym_norm_with_self_loops, topk_adjacency
from src.data.sparse_utils import as_coo, identity_added, make_coo, scipy_to_torch
from src.models.layers import SparseOp, propagate

CSGNorm = Literal["self_row", "neighbours", "residual"]
CSGAlpha = Literal["sum", "softmax"]
Readout = Literal["last", "mean"]


# --------------------------------------------------------------------------- Eq. 1

def profile_operator(train: sp.spmatrix, dtype: torch.dtype = torch.float32) -> Tensor:
    """Eq. 1, `D_U^-1 R` `[n_users, n_items]`: row u averages the items of I_u (zero row if none)."""
    r = sp.csr_matrix(train, dtype=np.float64, copy=True)
    r.data[:] = 1.0
    deg = np.asarray(r.sum(1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return scipy_to_torch(sp.diags(inv) @ r, dtype)


# --------------------------------------------------------------------------- Eqs. 2-3

def msg_operator(neighbours: Tensor, symmetric: bool = False, dtype: torch.dtype = torch.float32) -> Tensor:
    """Eqs. 2-3: `D~^-1/2 (A + I) D~^-1/2` on the binary KNN graph given by its lists `[n, k]`.

    Entry (u, v), v in N_u or v = u, is 1 / (sqrt(|N_u|+1) sqrt(|N_v|+1)). Directed lists (the
    default, SPUMR.md choice B) give |N| = k for every node, i.e. a plain mean over {u} and N_u;
    `symmetric=True` uses the union of both directions (degrees vary). Computed in float64.
    """
    n = neighbours.shape[0]
    a = topk_adjacency(neighbours, n).double()
    if symmetric:
        a = (a + a.t()).coalesce()
        a = make_coo(a._indices(), torch.ones_like(a._values()), (n, n))
    return sym_norm_with_self_loops(a).to(dtype)


# --------------------------------------------------------------------------- Eqs. 4-5

def csg_operator(jaccard: Tensor, norm: CSGNorm = "self_row", alpha: CSGAlpha = "sum") -> Tensor:
    """Eqs. 4-5 on a top-k Jaccard graph (self not listed), one of SPUMR.md's three readings.

    `self_row` (4b): sum over N_u and u itself, alpha_uv = s_uv / sum_w s_uw with s_uu = 1.
    `neighbours` (4a): sum over N_u only, alpha normalised over N_u; a node with no
    neighbours gets a zero row (its representation becomes 0).
    `residual` (4c, DualGNN): h + sum_{v in N_u} alpha_uv h_v, i.e. the matrix I + (4a).
    `alpha="softmax"` replaces s by exp(s) before normalising (DualGNN's softmax weights).
    """
    if norm not in ("self_row", "neighbours", "residual"):
        raise ValueError(f"csg_norm must be 'self_row', 'neighbours' or 'residual', got {norm!r}")
    if alpha not in ("sum", "softmax"):
        raise ValueError(f"csg_alpha must be 'sum' or 'softmax', got {alpha!r}")
    s = as_coo(jaccard, "csg_operator input")
    if norm == "self_row":
        s = identity_added(s, 1.0)  # s_uu = 1, the Jaccard similarity of a set with itself
    if alpha == "softmax":
        s = make_coo(s._indices(), torch.exp(s._values()), tuple(s.shape))
    a = row_normalize(s)
    return identity_added(a, 1.0) if norm == "residual" else a


# --------------------------------------------------------------------------- composition

class Propagation(nn.Module):
    """`n_layers` applications of a fixed operator with a readout (last layer or layer mean)."""

    def __init__(self, matrix: Tensor, n_layers: int = 1, readout: Readout = "last"):
        super().__init__()
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        if n_layers < 0:
            raise ValueError(f"number of layers must be >= 0, got {n_layers}")
        self.op = SparseOp(matrix)
        self.n_layers, self.readout = int(n_layers), readout

    def forward(self, x: Tensor) -> Tensor:
        return propagate(self.op, x, self.n_layers, self.readout)

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, readout={self.readout}"


class OperatorChain(nn.Module):
    """A product of `Propagation` steps applied right to left (first step first).

    An empty chain is the identity (an ablated MSG or CSG step is simply left out).
    """

    def __init__(self, steps: list[Propagation]):
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: Tensor) -> Tensor:
        for step in self.steps:
            x = step(x)
        return x

    @torch.no_grad()
    def apply_chunked(self, x: Tensor, out: Tensor, chunk_columns: int = 512) -> Tensor:
        """The chain on a wide input written into `out`, one block of columns at a time
        (columns are independent). Each block is cast to `out`'s dtype and device first, so a
        4096-d float32 feature table needs only `out` plus one block of work memory."""
        n_out = self.steps[-1].op.shape[0] if len(self.steps) else x.shape[0]
        if out.shape != (n_out, x.shape[1]):
            raise ValueError(f"apply_chunked: out has shape {tuple(out.shape)}, expected {(n_out, x.shape[1])}")
        for a in range(0, x.shape[1], chunk_columns):
            block = x[:, a:a + chunk_columns].to(out.device, out.dtype).contiguous()
            out[:, a:a + chunk_columns] = self(block)
        return out
