"""`GraphStore`: the graphs of one dataset, as the models receive them.

Every graph comes from the TRAINING split only, is built once per process (memoised) and, with a
`GraphCache`, once per dataset fingerprint on disk. Results live on the CPU; models move them
with `.to(device)`. Normalisation (sym_norm, row_normalize, ...) is left to the models, which
can cache their own derived graphs through `cached`.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

import scipy.sparse as sp
import torch
from torch import Tensor

from src.data.cache import GraphCache, canonical_params
from src.data.formats import RecData
from src.data.graphs import jaccard_topk, knn_graphs, profile_sums, scipy_to_torch, user_item_adjacency
from src.data.knn import Lists

log = logging.getLogger(__name__)
T = TypeVar("T")

# Part of every built-in graph's cache key: bump it when a builder's output changes so that
# files written by the old code are not reused.
BUILDERS_VERSION = 1


KNN_METHODS = ("exact", "faiss")


def check_knn_options(knn: dict | None) -> dict:
    """`knn` config: {method: exact} (default) or {method: faiss, index: ivf|hnsw|flat, nlist,
    nprobe, hnsw_m, ef_construction, ef_search, seed, recall_sample}."""
    opts = {"method": "exact"} | dict(knn or {})
    if opts["method"] not in KNN_METHODS:
        raise ValueError(f"dataset knn.method must be one of {KNN_METHODS}, got {opts['method']!r}")
    if opts["method"] == "faiss":
        opts.setdefault("index", "ivf")
        opts.setdefault("recall_sample", 256)
        allowed = {"method", "index", "nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "seed",
                   "recall_sample", "chunk_size", "train_per_list", "niter"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise ValueError(f"dataset knn options {unknown} are not known; expected some of {sorted(allowed)}")
    elif len(opts) > 1:
        raise ValueError(f"dataset knn.method=exact takes no options, got {sorted(set(opts) - {'method'})}")
    return opts


class GraphStore:
    """Training-split graphs of `data`, cached by (name, params, data.fingerprint).

    `device` is where the cosine KNN graphs are computed (a GPU makes the 4096-d ones take
    seconds); results are always returned on the CPU. Returned tensors are shared between
    callers: do not modify them in place.
    """

    def __init__(self, data: RecData, cache: GraphCache | None = None,
                 device: str | torch.device | None = None, knn: dict | None = None):
        self.data = data
        self.cache = cache
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.knn = check_knn_options(knn)
        self.knn_recall: dict[str, float] = {}   # "<side>/<modality>" -> recall@k of faiss lists
        self._memo: dict[tuple[str, str], object] = {}
        self._train_csr: sp.csr_matrix | None = None

    # ----------------------------------------------------------------- generic hook

    def cached(self, name: str, params: dict, build: Callable[[], T]) -> T:
        """`build()` once per (name, params) in this process, and once per dataset on disk."""
        memo_key = (name, canonical_params(params))
        if memo_key not in self._memo:
            def timed_build() -> T:
                t0 = time.perf_counter()
                value = build()
                log.info("built graph %s %s in %.1f s", name, memo_key[1], time.perf_counter() - t0)
                return value
            self._memo[memo_key] = (self.cache.get_or_build(name, params, timed_build)
                                    if self.cache is not None else timed_build())
        return self._memo[memo_key]  # type: ignore[return-value]

    # ----------------------------------------------------------------- interactions

    def train_csr(self) -> sp.csr_matrix:
        """Binary `[n_users, n_items]` scipy CSR of the training split."""
        if self._train_csr is None:
            self._train_csr = self.data.train_matrix()
        return self._train_csr

    def train_matrix(self) -> Tensor:
        """Binary `[n_users, n_items]` torch sparse COO of the training split (float32)."""
        return scipy_to_torch(self.train_csr(), torch.float32)

    def user_item_adjacency(self) -> Tensor:
        """LightGCN's normalised `[(U+I), (U+I)]` adjacency, users first (training split)."""
        return self.cached("user_item_adjacency", {"v": BUILDERS_VERSION},
                           lambda: user_item_adjacency(self.train_csr()))

    # ----------------------------------------------------------------- modal similarity

    def features(self, modality: str) -> Tensor:
        """Raw item features `[n_items, d]` of one modality (float32, shares the numpy memory)."""
        if modality not in self.data.features:
            raise KeyError(f"unknown modality {modality!r}; dataset {self.data.name!r} has "
                           f"{sorted(self.data.features) or 'no modalities'}")
        return torch.from_numpy(self.data.features[modality])

    def user_profiles(self, modality: str) -> Tensor:
        """Mean raw feature over each user's training items, `[n_users, d]` (not cached: one
        sparse product)."""
        return profile_sums(self.train_csr(), self.features(modality))

    def _knn(self, modality: str, k: int) -> dict[str, Lists]:
        x = self.features(modality)
        if self.knn["method"] == "faiss":
            return self._faiss_knn(modality, x, k)

        def build() -> dict[str, Lists]:
            out = knn_graphs(self.train_csr(), x.to(self.device), k)
            return {side: (idx.cpu(), val.cpu()) for side, (idx, val) in out.items()}
        return self.cached("knn", {"modality": modality, "k": k, "v": BUILDERS_VERSION}, build)

    def _faiss_knn(self, modality: str, x: Tensor, k: int) -> dict[str, Lists]:
        """Approximate lists (`ann.faiss_topk`) of items by raw features and users by profiles;
        recall@k against exact lists is measured on `recall_sample` rows of each side."""
        from src.data.ann import faiss_topk, recall_at_k

        opts = {key: v for key, v in self.knn.items() if key not in ("method", "recall_sample")}

        def build() -> dict[str, Lists]:
            out = {}
            for side, rows in (("items", lambda: x), ("users", lambda: profile_sums(self.train_csr(), x))):
                feats = rows()
                out[side] = faiss_topk(feats, k, **opts)
                recall = recall_at_k(feats, out[side][0], self.knn["recall_sample"])
                out[f"recall_{side}"] = torch.tensor(recall)
                log.info("faiss %s KNN of %s: recall@%d %.4f on %d sampled rows", side, modality, k,
                         recall, self.knn["recall_sample"])
            return out
        params = {"modality": modality, "k": k, "v": BUILDERS_VERSION, **self.knn}
        out = self.cached("knn_faiss", params, build)
        for side in ("items", "users"):
            self.knn_recall[f"{side}/{modality}"] = float(out[f"recall_{side}"])
        return out

    def item_knn(self, modality: str, k: int) -> Lists:
        """Top-k cosine neighbours of each item by raw features: (indices, similarities) `[n_items, k]`.

        Built together with `user_knn` of the same modality (they can share the item Gram matrix).
        """
        return self._knn(modality, k)["items"]

    def user_knn(self, modality: str, k: int) -> Lists:
        """Top-k cosine neighbours of each user by `user_profiles`: `[n_users, k]` lists."""
        return self._knn(modality, k)["users"]

    # ----------------------------------------------------------------- collaborative similarity

    def item_jaccard(self, k: int) -> Tensor:
        """Top-k Jaccard item-item graph over training users, sparse `[n_items, n_items]`."""
        return self.cached("item_jaccard", {"k": k, "v": BUILDERS_VERSION},
                           lambda: jaccard_topk(self.train_csr().T.tocsr(), k))

    def user_jaccard(self, k: int) -> Tensor:
        """Top-k Jaccard user-user graph over training items, sparse `[n_users, n_users]`."""
        return self.cached("user_jaccard", {"k": k, "v": BUILDERS_VERSION},
                           lambda: jaccard_topk(self.train_csr(), k))

    def __repr__(self) -> str:
        where = self.cache.directory if self.cache is not None and self.cache.enabled else "off"
        return f"GraphStore({self.data.name}, cache={where}, built={len(self._memo)})"

