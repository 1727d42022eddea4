"""Approximate cosine k-nearest-neighbour lists through faiss, for catalogues where exact is too slow.

Exact blocked KNN (`knn.cosine_topk`) costs n^2 d multiply-adds: about 8e14 for a million
512-d items, hours on a 2-core CPU. An inverted-file index (IVF: k-means cells, each query
scans `nprobe` cells) or an HNSW graph gets most of the true neighbours for a small fraction of
that. Same output contract as the exact lists: `(indices [n, k] int64, similarities [n, k])`,
self excluded, each row ordered by similarity (ties in any order). `recall_at_k` measures the
agreement with exact lists on a sample of rows.

faiss (`faiss-cpu` on PyPI, pinned in requirements.txt) is imported only when used.
"""
from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from src.data.knn import Lists, check_features, topk_lowest_index, unit_rows

log = logging.getLogger(__name__)
IndexKind = Literal["ivf", "hnsw", "flat"]


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("knn method 'faiss' needs the faiss-cpu package (pip install faiss-cpu, "
                          "pinned in requirements.txt); or use the exact method") from e
    return faiss


def build_index(xn: np.ndarray, kind: IndexKind = "ivf", nlist: int | None = None, nprobe: int = 16,
                hnsw_m: int = 32, ef_construction: int = 80, ef_search: int = 64,
                train_per_list: int = 40, niter: int = 10, seed: int = 0):
    """A faiss inner-product index over the unit rows `xn` (float32, C-contiguous)."""
    faiss = _faiss()
    n, d = xn.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = xn[np.sort(rng.choice(n, size=min(n, train_per_list * nlist), replace=False))]
        index.cp.seed = seed
        index.cp.niter = niter   # k-means rounds for the cells (faiss's default 25 buys little here)
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"faiss index must be 'ivf', 'hnsw' or 'flat', got {kind!r}")
    index.add(xn)
    return index


def faiss_topk(x: Tensor, k: int, *, index: IndexKind = "ivf", chunk_size: int = 65536, **params) -> Lists:
    """Approximate top-k cosine neighbours of every row of `x` (`[n, d]`), self excluded.

    `params` go to `build_index` (nlist, nprobe, hnsw_m, ef_construction, ef_search, train_per_list,
    niter, seed).
    Rows for which the index returns fewer than k other rows get exact lists instead.
    """
    x = check_features(x, "faiss_topk input").float().cpu()
    n = x.shape[0]
    k = min(int(k), n - 1)
    if k < 1:
        return torch.empty(n, 0, dtype=torch.long), torch.empty(n, 0)
    xn_t = unit_rows(x).contiguous()
    xn = xn_t.numpy()
    t0 = time.perf_counter()
    idx = build_index(xn, index, **params)
    t1 = time.perf_counter()
    out_i = np.empty((n, k), dtype=np.int64)
    out_v = np.empty((n, k), dtype=np.float32)
    for a in range(0, n, chunk_size):
        sims, ids = idx.search(xn[a:a + chunk_size], k + 1)
        rows = np.arange(a, a + len(ids))[:, None]
        drop = (ids == rows) | (ids < 0)
        # keep the first k entries that are neither self nor missing (stable: order preserved)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        out_i[a:a + len(ids)] = np.take_along_axis(ids, order, 1)
        out_v[a:a + len(ids)] = np.take_along_axis(sims, order, 1)
        short = np.flatnonzero(np.take_along_axis(drop, order, 1).any(1))
        if len(short):  # the probed cells held fewer than k other rows: exact lists for those rows
            ei, ev = exact_rows(xn_t, torch.from_numpy(short + a), k)
            out_i[short + a], out_v[short + a] = ei.numpy(), ev.numpy()
    log.info("faiss %s KNN: %d rows x %d dims, k=%d: index %.1f s, search %.1f s", index, n, x.shape[1], k,
             t1 - t0, time.perf_counter() - t1)
    return torch.from_numpy(out_i), torch.from_numpy(out_v)


def exact_rows(xn: Tensor, rows: Tensor, k: int, chunk_size: int = 1024) -> Lists:
    """Exact top-k cosine lists of some rows of the unit-row matrix `xn` (self excluded)."""
    out_i, out_v = [], []
    for a in range(0, len(rows), chunk_size):
        r = rows[a:a + chunk_size]
        s = xn[r] @ xn.T
        s[torch.arange(len(r)), r] = float("-inf")
        i, v = topk_lowest_index(s, k)
        out_i.append(i)
        out_v.append(v)
    if not out_i:
        return torch.empty(0, k, dtype=torch.long), torch.empty(0, k)
    return torch.cat(out_i), torch.cat(out_v)


def recall_at_k(x: Tensor, lists: Tensor, n_sample: int = 256, seed: int = 0) -> float:
    """Mean share of each sampled row's exact top-k cosine neighbours found in `lists` (`[n, k]`)."""
    x = check_features(x, "recall_at_k input").float()
    n, k = lists.shape
    if k == 0 or n_sample <= 0:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(n, generator=g)[:min(n_sample, n)].sort().values
    exact, _ = exact_rows(unit_rows(x), rows, k)
    approx = lists[rows]
    found = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(1).float().sum(1)
    return float((found / k).mean())
