"""Approximate KNN through faiss against the exact blocked lists, and its GraphStore option."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from src.data.ann import faiss_topk, recall_at_k  # noqa: E402
from src.data.graph_store import GraphStore, check_knn_options  # noqa: E402
from src.data.knn import cosine_topk  # noqa: E402
from tests.model_checks import tiny_data  # noqa: E402


def _points(n: int = 400, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


def _same_lists(a, b) -> None:
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)


def test_flat_index_gives_the_exact_lists():
    x = _points()
    _same_lists(faiss_topk(x, 7, index="flat"), cosine_topk(x, 7))


def test_ivf_probing_every_cell_is_exhaustive():
    x = _points()
    _same_lists(faiss_topk(x, 5, index="ivf", nlist=8, nprobe=8), cosine_topk(x, 5))


def test_rows_with_too_few_candidates_fall_back_to_exact_lists():
    x = _points(n=60)  # 30 cells of ~2 rows, one probed: nearly every row comes back short
    _same_lists(faiss_topk(x, 6, index="ivf", nlist=30, nprobe=1), cosine_topk(x, 6))


def test_approximate_lists_exclude_self_and_measure_their_recall():
    x = _points(n=2000, d=24, seed=1)
    idx, sims = faiss_topk(x, 10, index="ivf", nlist=40, nprobe=2)
    assert idx.shape == (2000, 10) and sims.shape == (2000, 10)
    assert not bool((idx == torch.arange(2000)[:, None]).any())
    assert bool((sims[:, :-1] >= sims[:, 1:] - 1e-6).all())           # ordered by similarity
    recall = recall_at_k(x, idx, n_sample=300)
    exact = cosine_topk(x, 10)[0]
    assert 0.2 < recall < 1.0                                          # 2 of 40 cells: not exhaustive
    assert recall_at_k(x, exact, n_sample=300) == 1.0
    xn = torch.nn.functional.normalize(x, dim=1)
    farthest = torch.argsort(xn @ xn.T, dim=1)[:, :10]  # the 10 least similar: none of the 10 most
    assert recall_at_k(x, farthest, n_sample=300) == 0.0


def test_hnsw_finds_most_neighbours():
    x = _points(n=1500, d=16, seed=2)
    idx, _ = faiss_topk(x, 10, index="hnsw", hnsw_m=16, ef_search=64)
    assert recall_at_k(x, idx, n_sample=300) > 0.8


def test_graph_store_faiss_option_builds_lists_and_records_recall():
    data = tiny_data({"image": 6, "text": 4}, n_users=30, n_items=40)
    store = GraphStore(data, knn={"method": "faiss", "index": "flat", "recall_sample": 40})
    idx, sims = store.item_knn("image", 5)
    _same_lists((idx, sims), cosine_topk(torch.from_numpy(data.features["image"]), 5))
    assert store.user_knn("image", 5)[0].shape == (30, 5)
    assert store.knn_recall == {"items/image": 1.0, "users/image": 1.0}


def test_knn_options_are_checked():
    assert check_knn_options(None) == {"method": "exact"}
    with pytest.raises(ValueError, match="knn.method"):
        check_knn_options({"method": "annoy"})
    with pytest.raises(ValueError, match="nprob"):
        check_knn_options({"method": "faiss", "nprob": 3})
    with pytest.raises(ValueError, match="takes no options"):
        check_knn_options({"method": "exact", "nprobe": 3})
