"""Small sparse and dtype helpers shared by the graph builders (`knn.py`, `graphs.py`)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def float_dtype(dtype: torch.dtype | np.dtype) -> torch.dtype:
    """float64 stays float64; everything else computes in float32."""
    if isinstance(dtype, torch.dtype):
        return torch.float64 if dtype == torch.float64 else torch.float32
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def make_coo(indices: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A coalesced COO tensor from indices we built ourselves (invariants hold by construction)."""
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=False).coalesce()


def as_coo(a: Tensor, what: str) -> Tensor:
    """Accept a 2-D torch sparse COO or CSR matrix; return it as coalesced COO."""
    if not isinstance(a, Tensor) or a.layout not in (torch.sparse_coo, torch.sparse_csr):
        got = type(a).__name__ if not isinstance(a, Tensor) else f"a tensor with layout {a.layout}"
        raise TypeError(f"{what}: expected a torch sparse COO or CSR tensor, got {got}")
    if a.dim() != 2:
        raise ValueError(f"{what}: expected a 2-D sparse matrix, got shape {tuple(a.shape)}")
    return (a.to_sparse_coo() if a.layout == torch.sparse_csr else a).coalesce()


def check_nonneg(a: Tensor, what: str) -> None:
    if a._nnz() and bool((a._values() < 0).any()):
        raise ValueError(f"{what}: has negative entries; graph weights must be non-negative")


def check_square(a: Tensor, what: str) -> None:
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{what}: expected a square matrix, got shape {tuple(a.shape)}")


def row_sums(a: Tensor) -> Tensor:
    """Row sums of a coalesced COO matrix as a dense vector."""
    out = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    return out.index_add_(0, a._indices()[0], a._values())


def safe_inverse(x: Tensor, power: float = 1.0) -> Tensor:
    """x ** -power where x > 0, and 0 elsewhere (no inf or NaN)."""
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(x > 0, x.clamp_min(tiny).pow(-power), torch.zeros_like(x))


def identity_added(a: Tensor, weight: float) -> Tensor:
    """A + weight * I for a square coalesced COO matrix."""
    n = a.shape[0]
    diag = torch.arange(n, device=a.device).expand(2, n)
    values = torch.full((n,), float(weight), dtype=a.dtype, device=a.device)
    return make_coo(torch.cat([a._indices(), diag], 1), torch.cat([a._values(), values]), tuple(a.shape))


def scipy_to_torch(m: sp.spmatrix, dtype: torch.dtype | None = None) -> Tensor:
    """A scipy sparse matrix as a coalesced torch COO tensor (float32 unless float64)."""
    m = sp.coo_matrix(m)
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    return make_coo(idx, torch.from_numpy(m.data).to(dtype or float_dtype(m.dtype)), m.shape)


def binary_csr(r: sp.spmatrix, what: str) -> sp.csr_matrix:
    """The non-zero pattern of `r` as a CSR matrix of ones (float64 if `r` is, else float32)."""
    if not sp.issparse(r):
        raise TypeError(f"{what}: expected a scipy sparse matrix, got {type(r).__name__}")
    if r.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D matrix, got shape {r.shape}")
    out = sp.csr_matrix(r, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data = np.ones(len(out.data), dtype=np.float64 if r.dtype == np.float64 else np.float32)
    out.sort_indices()
    return out


def spmm(r: sp.csr_matrix, dense: Tensor) -> Tensor:
    """`r @ dense`: scipy on CPU (about twice torch's CSR kernel here), torch on other devices."""
    if dense.device.type == "cpu":
        d = dense.detach().numpy()
        return torch.from_numpy(np.asarray(r.astype(d.dtype, copy=False) @ d))
    t = scipy_to_torch(r, dense.dtype).to(dense.device).to_sparse_csr()
    return t @ dense
