"""Time the graph builders at Amazon Clothing scale on random data (prints timings; not a test).

    python scripts/bench_graphs.py                  # 39,387 users, 23,033 items, 280k interactions
    python scripts/bench_graphs.py --scale 0.25     # everything scaled down (quick check)

Interactions have power-law degrees on both sides; features are Gaussian (image 4096-d, text
384-d). The graphs are those SPUMR needs: user and item cosine KNN per modality and user and
item Jaccard top-k, all with k = 10.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.data.graphs import cosine_topk, jaccard_topk, knn_graphs, profile_sums  # noqa: E402
from src.data.knn import choose_method  # noqa: E402


def power_law_interactions(n_users: int, n_items: int, nnz: int, seed: int = 0,
                           exponent: float = 0.6) -> sp.csr_matrix:
    """Binary matrix with Zipf-like item popularity and Pareto user activity (>= 3 each)."""
    rng = np.random.default_rng(seed)
    activity = rng.pareto(2.5, n_users) + 1.0
    deg = np.maximum(3, np.round(activity / activity.sum() * nnz)).astype(np.int64)
    deg = np.minimum(deg, 200)
    pop = 1.0 / np.arange(1, n_items + 1) ** exponent
    pop = rng.permutation(pop / pop.sum())
    users = np.repeat(np.arange(n_users), deg)
    items = rng.choice(n_items, size=len(users), p=pop)
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<48s} {dt:8.2f} s", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply users/items/interactions")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dims", default="4096,384", help="feature dims, comma-separated")
    ap.add_argument("--method", default="auto", choices=["auto", "direct", "gram"],
                    help="knn_graphs method (auto picks per modality)")
    ap.add_argument("--separate", action="store_true",
                    help="time cosine_topk on items and on user profiles separately instead")
    ap.add_argument("--no-knn", action="store_true", help="skip the KNN graphs")
    ap.add_argument("--no-jaccard", action="store_true", help="skip the Jaccard graphs")
    args = ap.parse_args()
    n_u, n_i, nnz = (int(round(v * args.scale)) for v in (39_387, 23_033, 280_000))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{n_u} users x {n_i} items, k={args.k}")
    r, _ = timed("synthetic interactions", lambda: power_law_interactions(n_u, n_i, nnz))
    print(f"  {r.nnz} interactions; max user degree {np.diff(r.indptr).max()}, "
          f"max item degree {r.getnnz(axis=0).max()}")
    total = 0.0
    rng = np.random.default_rng(1)
    for d in ([] if args.no_knn else map(int, args.dims.split(","))):
        x = torch.from_numpy(rng.standard_normal((n_i, d), dtype=np.float32))
        if args.separate:
            _, dt = timed(f"item cosine KNN, {d}-d (cosine_topk)", lambda: cosine_topk(x, args.k))
            total += dt
            _, dt = timed(f"user cosine KNN, {d}-d (profiles, cosine_topk)",
                          lambda: cosine_topk(profile_sums(r, x), args.k))
            total += dt
        else:
            method = args.method if args.method != "auto" else choose_method(r, x)
            _, dt = timed(f"item + user cosine KNN, {d}-d ({method})",
                          lambda: knn_graphs(r, x, args.k, method=method))
            total += dt
    if not args.no_jaccard:
        j, dt = timed("item Jaccard top-k", lambda: jaccard_topk(r.T.tocsr(), args.k))
        total += dt
        print(f"  {j._nnz()} edges")
        j, dt = timed("user Jaccard top-k", lambda: jaccard_topk(r, args.k))
        total += dt
        print(f"  {j._nnz()} edges")
    print(f"{'total':<48s} {total:8.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
