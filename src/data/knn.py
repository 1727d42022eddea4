"""Exact cosine k-nearest-neighbour lists, computed in blocks (never a dense n x n matrix).

One rule everywhere: each row keeps the k most similar other rows, ties broken by the lower
index, self excluded before the top-k (self never takes a slot), and the lists are ordered by
(similarity desc, index asc). Rows with zero norm have similarity 0 with everything, so their
lists are the lowest indices with similarity 0.

Users are compared through their mean raw item features (SPUMR.md, choice A.3). For 4096-d
features and more users than items that product is the dominant cost, so `knn_graphs` can route
both graphs of a modality through the item Gram matrix G = X X^T (see `knn_graphs`).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from src.data.sparse_utils import binary_csr, float_dtype, safe_inverse, spmm

Lists = tuple[Tensor, Tensor]          # (indices [n, k] int64, similarities [n, k])
Method = Literal["auto", "direct", "gram"]

# Relative cost of one multiply-add in scipy sparse @ dense versus a dense matmul on the 2-core
# CPU this was tuned on (~1.8 vs ~95 G multiply-adds/s); it only picks a method.
_SPARSE_COST = 50.0


# --------------------------------------------------------------------------- top-k core

def topk_lowest_index(s: Tensor, k: int, ties_matter_above: float | None = None) -> Lists:
    """Row-wise top-k of a dense block, ties broken by the lower column index.

    Returns (columns, values), each `[rows, k]`, ordered by (value desc, column asc).
    `torch.topk` picks arbitrarily among values equal to the k-th one. Such a boundary tie exists
    exactly when the (k+1)-th largest value equals the k-th, so one top-(k+1) finds the rows to
    redo; those keep every value above the k-th and then the first columns equal to it. With
    `ties_matter_above`, rows whose k-th value is not above it are not redone (Jaccard drops zero
    similarities, so ties at zero do not matter there).
    """
    k_plus = min(k + 1, s.shape[1])
    v, i = torch.topk(s, k_plus, dim=1)
    if k_plus == k:
        return _order_lists(i, v)
    tied = v[:, k] == v[:, k - 1]
    v, i = v[:, :k].contiguous(), i[:, :k].contiguous()
    if ties_matter_above is not None:
        tied &= v[:, k - 1] > ties_matter_above
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        sr, kth = s[rows], v[rows, k - 1:]
        above, equal = sr > kth, sr == kth
        room = k - above.sum(1, keepdim=True)
        keep = above | (equal & (equal.cumsum(1, dtype=torch.int32) <= room))
        cols = keep.nonzero()[:, 1].view(-1, k)      # exactly k per row, ascending columns
        i[rows] = cols
        v[rows] = sr.gather(1, cols)
    return _order_lists(i, v)


def _order_lists(i: Tensor, v: Tensor) -> Lists:
    """Sort each row by (value desc, index asc)."""
    i, order = i.sort(dim=1)
    v = v.gather(1, order)
    v, order = v.sort(dim=1, descending=True, stable=True)
    return i.gather(1, order), v


def _merge_lists(old: Lists | None, new: Lists, k: int) -> Lists:
    """The best k of two candidate lists over disjoint column sets (same order rule)."""
    if old is not None:
        new = _order_lists(torch.cat([old[0], new[0]], 1), torch.cat([old[1], new[1]], 1))
    return new[0][:, :k], new[1][:, :k]


def _effective_k(k: int, n: int, exclude_self: bool = True) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return max(0, min(int(k), n - 1 if exclude_self else n))


def _empty_lists(n: int, dtype: torch.dtype, device: torch.device) -> Lists:
    return (torch.empty(n, 0, dtype=torch.long, device=device),
            torch.empty(n, 0, dtype=dtype, device=device))


def unit_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    return x * safe_inverse(x.norm(dim=1, keepdim=True))


def check_features(x: Tensor, what: str) -> Tensor:
    """A finite 2-D float tensor (float64 kept, other dtypes as float32)."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what}: expected a 2-D [n, d] tensor, got {got}")
    x = x.detach().to(float_dtype(x.dtype))
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        raise ValueError(f"{what}: row {int((~finite).nonzero()[0])} holds NaN or inf; "
                         f"expected finite values")
    return x


# --------------------------------------------------------------------------- cosine KNN

def cosine_topk(x: Tensor, k: int, *, chunk_size: int = 4096, exclude_self: bool = True) -> Lists:
    """Exact top-k cosine neighbours of every row of `x` (`[n, d]`).

    Returns (indices `[n, k']` int64, similarities `[n, k']`), k' = min(k, n-1) (min(k, n) when
    self is allowed). The similarity matrix is symmetric, so it is computed one
    `[chunk, chunk]` block per pair of row blocks (upper triangle only) and each block feeds the
    running lists of both its row block and its column block: half the matrix products of a
    plain row scan, and one block in memory at a time.
    """
    x = check_features(x, "cosine_topk input")
    n = x.shape[0]
    k_eff = _effective_k(k, n, exclude_self)
    if k_eff == 0:
        return _empty_lists(n, x.dtype, x.device)
    xn = unit_rows(x)
    starts = range(0, n, chunk_size)
    best: list[Lists | None] = [None] * len(starts)
    for bi, a in enumerate(starts):
        xa = xn[a:a + chunk_size]
        for bj in range(bi, len(starts)):
            b = starts[bj]
            s = xa @ xn[b:b + chunk_size].T
            if bi == bj and exclude_self:
                s.fill_diagonal_(float("-inf"))
            i, v = topk_lowest_index(s, min(k_eff, s.shape[1]))
            best[bi] = _merge_lists(best[bi], (i + b, v), k_eff)
            if bj != bi:
                i, v = topk_lowest_index(s.T.contiguous(), min(k_eff, s.shape[0]))
                best[bj] = _merge_lists(best[bj], (i + a, v), k_eff)
    indices = torch.cat([blk[0] for blk in best])
    values = torch.cat([blk[1] for blk in best])
    assert bool(torch.isfinite(values).all()), "a self entry leaked into a neighbour list"
    return indices, values


def profile_sums(r: sp.spmatrix, x: Tensor, *, mean: bool = True) -> Tensor:
    """`D^-1 R x`: each row's mean over the features of its columns (rows with none get zeros).

    With `mean=False`, the plain sum `R x`. `r` is read as binary.
    """
    r = binary_csr(r, "profile_sums interaction matrix")
    x = check_features(x, "profile_sums features")
    _check_columns(r, x, "profile_sums")
    p = spmm(r, x)
    if mean:
        deg = torch.from_numpy(np.diff(r.indptr)).to(p)
        p = p * safe_inverse(deg).unsqueeze(1)
    return p


def _check_columns(r: sp.csr_matrix, x: Tensor, what: str) -> None:
    if r.shape[1] != x.shape[0]:
        raise ValueError(f"{what}: the matrix has {r.shape[1]} columns but the features have "
                         f"{x.shape[0]} rows; expected one feature row per column (item)")


def _gram(x: Tensor, chunk_size: int) -> Tensor:
    """`x x^T`, one upper-triangle block pair at a time, mirrored."""
    n = x.shape[0]
    g = torch.empty(n, n, dtype=x.dtype, device=x.device)
    for a in range(0, n, chunk_size):
        for b in range(a, n, chunk_size):
            blk = x[a:a + chunk_size] @ x[b:b + chunk_size].T
            g[a:a + chunk_size, b:b + chunk_size] = blk
            if b != a:
                g[b:b + chunk_size, a:a + chunk_size] = blk.T
    return g


def _rows_of_gram_topk(g: Tensor, k: int, chunk_size: int) -> Lists:
    """Cosine top-k of the rows of x, given only G = x x^T."""
    n = g.shape[0]
    inv = safe_inverse(g.diagonal().clamp_min(0), 0.5)
    out_i, out_v = [], []
    for a in range(0, n, chunk_size):
        s = g[a:a + chunk_size] * inv[a:a + chunk_size, None] * inv[None, :]
        s[torch.arange(s.shape[0]), torch.arange(a, a + s.shape[0])] = float("-inf")
        i, v = topk_lowest_index(s, k)
        out_i.append(i)
        out_v.append(v)
    return torch.cat(out_i), torch.cat(out_v)


def _profiles_via_gram_topk(r: sp.csr_matrix, g: Tensor, x: Tensor, k: int, chunk_size: int) -> Lists:
    """Cosine top-k of the rows of R x, given G = x x^T: (R x)(R x)^T = R G R^T.

    A block of rows costs (R_b G) [c, n_cols] and R (R_b G)^T [n_rows, c]: two sparse products
    with work nnz(R_b) n_cols + nnz(R) c instead of a dense c x n_rows x d product.
    """
    n_u = r.shape[0]
    g_np = g.numpy()
    r = r.astype(g_np.dtype)
    norms = torch.cat([spmm(r[a:a + chunk_size], x).norm(dim=1) for a in range(0, n_u, chunk_size)])
    inv = safe_inverse(norms)
    out_i, out_v = [], []
    for a in range(0, n_u, chunk_size):
        m = torch.from_numpy(np.asarray(r[a:a + chunk_size] @ g_np))          # [c, n_cols]
        s = torch.from_numpy(np.asarray(r @ m.T.contiguous().numpy())).T.contiguous()  # [c, n_u]
        c = s.shape[0]
        s *= inv[a:a + c, None] * inv[None, :]
        s[torch.arange(c), torch.arange(a, a + c)] = float("-inf")
        i, v = topk_lowest_index(s, k)
        out_i.append(i)
        out_v.append(v)
    return torch.cat(out_i), torch.cat(out_v)


def choose_method(r: sp.csr_matrix, x: Tensor, max_gram_bytes: int = 4 << 30) -> str:
    """'gram' when it is estimated cheaper on this CPU and G fits in memory, else 'direct'."""
    n_u, n_i = r.shape
    d = x.shape[1]
    if x.device.type != "cpu" or n_i * n_i * x.element_size() > max_gram_bytes:
        return "direct"
    direct = (n_u * n_u + n_i * n_i) * d / 2                # users + items, symmetric blocks
    gram = n_i * n_i * d / 2 + _SPARSE_COST * r.nnz * (n_i + n_u)
    return "gram" if gram < direct else "direct"


def knn_graphs(r: sp.spmatrix, x: Tensor, k: int, *, chunk_size: int = 2048,
               method: Method = "auto", max_gram_bytes: int = 4 << 30) -> dict[str, Lists]:
    """Item and user cosine KNN lists of one modality: {"items": lists, "users": lists}.

    Items are compared by their raw features `x` (`[n_items, d]`), users by their mean profile
    over their items in `r` (`[n_users, n_items]`, read as binary); rows of `r` with no entries
    have zero profiles. `method="direct"` is `cosine_topk(x)` and `cosine_topk(profile_sums(r, x))`.
    `method="gram"` computes G = x x^T once (`[n_items, n_items]`, must fit `max_gram_bytes`),
    reads the item lists off G and the user lists off R G R^T, with no d-wide product over
    users; for Amazon Clothing's 4096-d image features that halves the time. "auto" picks by
    a cost estimate. Both give the same lists up to float rounding.
    """
    r = binary_csr(r, "knn_graphs interaction matrix")
    x = check_features(x, "knn_graphs features")
    _check_columns(r, x, "knn_graphs")
    if method not in ("auto", "direct", "gram"):
        raise ValueError(f"method must be 'auto', 'direct' or 'gram', got {method!r}")
    if method == "auto":
        method = choose_method(r, x, max_gram_bytes)
    if method == "direct":
        return {"items": cosine_topk(x, k, chunk_size=chunk_size),
                "users": cosine_topk(profile_sums(r, x), k, chunk_size=chunk_size)}
    if x.device.type != "cpu":
        raise ValueError("knn_graphs: method='gram' runs on CPU tensors only")
    n_u, n_i = r.shape
    k_items, k_users = _effective_k(k, n_i), _effective_k(k, n_u)
    g = _gram(x, chunk_size)
    items = (_rows_of_gram_topk(g, k_items, chunk_size) if k_items
             else _empty_lists(n_i, x.dtype, x.device))
    users = (_profiles_via_gram_topk(r, g, x, k_users, chunk_size) if k_users
             else _empty_lists(n_u, x.dtype, x.device))
    return {"items": items, "users": users}
