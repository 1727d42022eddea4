"""Graph builders shared by the models (DESIGN.md, "Data flow": RecData -> graphs.py -> Graphs).

Pure functions: no state, no disk (caching is `cache.py`, the per-dataset object `graph_store.py`).
Sparse outputs are coalesced torch sparse COO tensors: they work with `torch.sparse.mm`
(gradients flow to the dense operand) and move with `.to(device)`. Values are float32 unless the
input is float64, so the tests check everything in float64.

Neighbour lists (KNN in `knn.py`, re-exported here; Jaccard below) share one rule: the top k by
similarity, ties broken by the lower column index, self excluded before the top-k.
"""
from __future__ import annotations

import copy
import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from src.data.knn import cosine_topk, knn_graphs, profile_sums, topk_lowest_index, unit_rows
from src.data.sparse_utils import (as_coo, binary_csr, check_nonneg, check_square, float_dtype,
                                   identity_added, make_coo, row_sums, safe_inverse, scipy_to_torch)

__all__ = ["cosine_topk", "knn_graphs", "profile_sums", "unit_rows", "scipy_to_torch",
           "topk_adjacency", "jaccard_topk", "sym_norm", "sym_norm_with_self_loops",
           "row_normalize", "user_item_adjacency", "sparse_propagate", "CSROperator"]

Readout = Literal["last", "mean"]

# Cells of one padded float64 block in the Jaccard top-k selection (2**24 cells = 128 MiB).
DENSE_BLOCK_ELEMENTS = 2 ** 24


def topk_adjacency(indices: Tensor, n_cols: int, values: Tensor | None = None) -> Tensor:
    """Directed KNN adjacency `[n, n_cols]`: row i holds its own list (binary unless `values`)."""
    if not isinstance(indices, Tensor) or indices.dim() != 2:
        raise ValueError(f"topk_adjacency: expected indices of shape [n, k], got "
                         f"{tuple(indices.shape) if isinstance(indices, Tensor) else type(indices).__name__}")
    n, k = indices.shape
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_cols):
        raise ValueError(f"topk_adjacency: indices must lie in [0, {n_cols}), found "
                         f"[{int(indices.min())}, {int(indices.max())}]")
    if values is None:
        vals = torch.ones(n * k, device=indices.device)
    elif values.shape != indices.shape:
        raise ValueError(f"topk_adjacency: values have shape {tuple(values.shape)}, "
                         f"expected {tuple(indices.shape)} like the indices")
    else:
        vals = values.reshape(-1).to(float_dtype(values.dtype))
    rows = torch.arange(n, device=indices.device).repeat_interleave(k)
    a = make_coo(torch.stack([rows, indices.reshape(-1).long()]), vals, (n, n_cols))
    if a._nnz() != n * k:
        raise ValueError("topk_adjacency: a row lists the same column twice")
    return a


# --------------------------------------------------------------------------- Jaccard

def jaccard_topk(r: sp.spmatrix, k: int, *, chunk_size: int = 8192,
                 max_products: int = 1 << 24) -> Tensor:
    """Top-k Jaccard neighbours between the rows of a binary matrix, as a sparse `[n, n]` tensor.

    s_ij = |N(i) & N(j)| / |N(i) | N(j)| from the co-occurrence counts R R^T, one chunk of rows
    at a time. Each row keeps its k largest strictly positive similarities, self excluded, ties
    broken by the lower column index; a row with fewer than k candidates keeps what it has (no
    padding), and rows of `r` with no entries get no neighbours. The graph is directed (row i
    holds its own list). Values are float32 (float64 when `r` is float64); the ranking uses
    float64 similarities, which tell apart any two different fractions with denominators
    below 6.7e7, so equal values are exactly the equal fractions.

    Memory per chunk is bounded by `max_products` (the co-occurrence products its rows generate,
    an upper bound on its entries) and `DENSE_BLOCK_ELEMENTS`. Time grows with the number of
    co-occurring pairs, sum_j deg(j)^2 over the columns. Measured on the 2-core CPU with
    power-law data (scripts/bench_graphs.py): Amazon Clothing size, users 0.9 s and items 0.2 s;
    1M x 1M with 10M entries (1.3e9 user-user products), users 73 s and items 41 s, peak
    memory 1.7 GB. Much beyond that, cap the hub columns (drop or subsample the few most popular
    items) before building the user graph: the hubs make sum deg^2 explode.
    """
    b = binary_csr(r, "jaccard_topk matrix")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    out_dtype = float_dtype(b.dtype)
    n = b.shape[0]
    b = b.astype(np.int32 if b.shape[1] < 2 ** 31 else np.int64)   # exact integer counts
    bt = b.T.tocsr()
    deg = np.diff(b.indptr).astype(np.int64)
    work = b @ np.diff(bt.indptr).astype(np.int64)      # products each row generates in R R^T
    rows_out, cols_out, vals_out = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0)]
    a = 0
    while a < n:
        cum = np.cumsum(work[a:a + chunk_size])
        end = a + max(1, int(np.searchsorted(cum, max_products, side="right")))
        co = b[a:end] @ bt                               # co-occurrence counts, CSR [end - a, n]
        co.sort_indices()                                # columns ascending within rows: ties
        rows = np.repeat(np.arange(end - a), np.diff(co.indptr))
        cols = co.indices.astype(np.int64)
        off_diag = cols != rows + a
        rows, cols, inter = rows[off_diag], cols[off_diag], co.data[off_diag]
        sims = inter / (deg[rows + a] + deg[cols] - inter).astype(np.float64)
        keep = _rows_topk_mask(np.bincount(rows, minlength=end - a), sims, k)
        rows_out.append(rows[keep] + a)
        cols_out.append(cols[keep])
        vals_out.append(sims[keep])
        a = end
    idx = torch.from_numpy(np.vstack([np.concatenate(rows_out), np.concatenate(cols_out)]))
    return make_coo(idx, torch.from_numpy(np.concatenate(vals_out)).to(out_dtype), (n, n))


def _rows_topk_mask(lengths: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    """Mask of each row's top-k entries (value desc, then earlier entry) in CSR-ordered `sims`.

    `sims` holds the positive values of consecutive rows of the given lengths. Rows with at most
    k entries keep them all. Longer rows are grouped by ceil(log2(length)) and laid out as
    zero-padded dense blocks (at most half padding), where `topk_lowest_index` picks them: linear
    in the entries, no global sort.
    """
    keep = np.repeat(lengths <= k, lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    long_rows = np.flatnonzero(lengths > k)
    if not len(long_rows):
        return keep
    bucket = np.ceil(np.log2(lengths[long_rows])).astype(np.int64)
    for level in np.unique(bucket):
        group = long_rows[bucket == level]
        width = int(lengths[group].max())
        step = max(1, DENSE_BLOCK_ELEMENTS // width)
        for lo in range(0, len(group), step):
            sub = group[lo:lo + step]
            lens, first = lengths[sub], starts[sub]
            local_row = np.repeat(np.arange(len(sub)), lens)
            pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
            block = torch.zeros(len(sub), width, dtype=torch.float64)
            block[torch.from_numpy(local_row), torch.from_numpy(pos)] = \
                torch.from_numpy(sims[np.repeat(first, lens) + pos])
            picked, _ = topk_lowest_index(block, k)      # padding (0) never beats an entry (> 0)
            keep[(torch.from_numpy(first)[:, None] + picked).reshape(-1).numpy()] = True
    return keep


# --------------------------------------------------------------------------- normalisations

def sym_norm(a: Tensor) -> Tensor:
    """`D^-1/2 A D^-1/2` with D = row sums (LightGCN, FREEDOM); zero-sum rows give zeros.

    For a directed graph both sides use the row sums, as FREEDOM's normalised KNN graph does.
    """
    a = as_coo(a, "sym_norm input")
    check_square(a, "sym_norm input")
    check_nonneg(a, "sym_norm input")
    inv_sqrt = safe_inverse(row_sums(a), 0.5)
    rows, cols = a._indices()
    return make_coo(a._indices(), a._values() * inv_sqrt[rows] * inv_sqrt[cols], tuple(a.shape))


def sym_norm_with_self_loops(a: Tensor) -> Tensor:
    """`D~^-1/2 (A + I) D~^-1/2` with D~ = diag(rowsum(A) + 1) (GCN; SPUMR Eqs. 2-3).

    For a directed binary KNN graph (self not listed) entry (u, v), v in N_u or v = u, is
    1 / (sqrt(|N_u| + 1) sqrt(|N_v| + 1)). A diagonal already present in A is added to.
    """
    a = as_coo(a, "sym_norm_with_self_loops input")
    check_square(a, "sym_norm_with_self_loops input")
    check_nonneg(a, "sym_norm_with_self_loops input")
    return sym_norm(identity_added(a, 1.0))


def row_normalize(a: Tensor, self_weight: float | None = None) -> Tensor:
    """Each row divided by its sum, after adding `self_weight * I` if given. Zero rows stay zero.

    SPUMR Eq. 4b/5b: `row_normalize(jaccard, self_weight=1.0)`, s_uu = 1 being the Jaccard of a
    set with itself.
    """
    a = as_coo(a, "row_normalize input")
    check_nonneg(a, "row_normalize input")
    if self_weight is not None:
        check_square(a, "row_normalize input (self_weight needs a square matrix)")
        if self_weight < 0:
            raise ValueError(f"row_normalize: self_weight must be >= 0, got {self_weight}")
        a = identity_added(a, self_weight)
    inv = safe_inverse(row_sums(a))
    return make_coo(a._indices(), a._values() * inv[a._indices()[0]], tuple(a.shape))


def user_item_adjacency(r: sp.spmatrix) -> Tensor:
    """LightGCN's normalised bipartite adjacency `[(U+I), (U+I)]`, users first, no self loops.

    A = [[0, R], [R^T, 0]] on the binary pattern of `r`, then D^-1/2 A D^-1/2. Isolated users or
    items have zero rows and columns. MMRec (lightgcn.py, get_norm_adj_mat) adds 1e-7 to every
    degree before the inverse square root to dodge division by zero; here zero degrees map to 0
    instead. For degrees >= 1 the two differ by a relative 5e-8 or less, below float32
    resolution, and isolated nodes have no entries either way.
    """
    b = binary_csr(r, "user_item_adjacency matrix").tocoo()
    n_u, n_i = b.shape
    rows = np.concatenate([b.row, b.col + n_u]).astype(np.int64)
    cols = np.concatenate([b.col + n_u, b.row]).astype(np.int64)
    values = torch.ones(len(rows), dtype=float_dtype(b.dtype))
    return sym_norm(make_coo(torch.from_numpy(np.vstack([rows, cols])), values, (n_u + n_i, n_u + n_i)))


# --------------------------------------------------------------------------- propagation

class _CSRMatmul(torch.autograd.Function):
    """`A @ x` whose backward uses a precomputed CSR of A^T (torch would transpose each time)."""

    @staticmethod
    def forward(ctx, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.a_t = a_t
        return a @ x

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, ctx.a_t @ grad


class CSROperator:
    """A fixed sparse matrix held as CSR plus its transposed CSR, for repeated `A @ x`.

    Opt-in speed-up over `torch.sparse.mm` on a COO tensor. Measured on the 2-core CPU, 3 layers
    of 64-d propagation, forward + backward: 117 ms (COO) / 72 ms (CSR) / 27 ms (this) on the
    Clothing-sized LightGCN adjacency (559k entries). Gradients flow to `x` only.
    """

    def __init__(self, a: Tensor):
        a = as_coo(a, "CSROperator input")
        self.shape = tuple(a.shape)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.csr = a.to_sparse_csr()
            self.csr_t = a.t().coalesce().to_sparse_csr()

    def __matmul__(self, x: Tensor) -> Tensor:
        return _CSRMatmul.apply(self.csr, self.csr_t, x)

    def to(self, device: str | torch.device) -> "CSROperator":
        out = copy.copy(self)
        out.csr, out.csr_t = self.csr.to(device), self.csr_t.to(device)
        return out


def sparse_propagate(a: Tensor | CSROperator, x: Tensor, n_layers: int,
                     readout: Readout = "last") -> Tensor:
    """Apply `a` to `x` n_layers times; the last layer, or the mean of layers 0..L (LightGCN)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if readout not in ("last", "mean"):
        raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
    h, total = x, x
    for _ in range(n_layers):
        h = a @ h if isinstance(a, CSROperator) else torch.sparse.mm(a, h)
        if readout == "mean":
            total = total + h
    return h if readout == "last" else total / (n_layers + 1)
