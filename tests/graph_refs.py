"""Brute-force references for the graph tests: plain Python/numpy, no code from src/."""
from __future__ import annotations

import numpy as np


def ref_topk(sim: np.ndarray, k: int, exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per row: sort by (similarity desc, column asc), drop self, keep k."""
    n = sim.shape[0]
    idx, val = [], []
    for i in range(n):
        cols = [j for j in range(sim.shape[1]) if not (exclude_self and j == i)]
        cols.sort(key=lambda j: (-sim[i, j], j))
        idx.append(cols[:k])
        val.append([sim[i, j] for j in cols[:k]])
    return np.array(idx, dtype=np.int64).reshape(n, -1), np.array(val).reshape(n, -1)


def ref_cosine(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    inv = np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0)
    xn = x * inv[:, None]
    return xn @ xn.T


def ref_jaccard(r: np.ndarray, k: int) -> np.ndarray:
    """Dense top-k Jaccard from Python set arithmetic."""
    sets = [set(np.flatnonzero(row)) for row in r]
    n = len(sets)
    out = np.zeros((n, n))
    for i in range(n):
        cand = []
        for j in range(n):
            if i == j or not sets[i] or not sets[j]:
                continue
            s = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            if s > 0:
                cand.append((-s, j))
        for neg_s, j in sorted(cand)[:k]:
            out[i, j] = -neg_s
    return out


def random_binary(n: int, m: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, m)) < density).astype(np.float64)
