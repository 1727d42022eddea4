"""Tests for src.metrics.ranking against hand-computed values, a naive MMRec-style reference and
properties (perfect ranking, batching and DDP-merge invariance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from src.metrics.ranking import RankingMetrics, hits_from_topk, per_user_metrics

KEYS = ("recall", "ndcg", "precision", "map")


def csr(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(target_ptr, target_index) for a list of per-user relevant item lists."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    index = torch.tensor([i for r in rows for i in r], dtype=torch.long)
    return ptr, index


# ---------------------------------------------------------------- hand-computed tiny case
# user 0: top-5 = [10, 11, 12, 13, 14], relevant {12}           -> |R| = 1, hit at rank 3
# user 1: top-5 = [0, 1, 2, 3, 4], relevant {0,1,3,15,16,17,18}  -> |R| = 7, hits at ranks 1, 2, 4
# (user 1's relevant items are given unsorted on purpose)
TOPK = torch.tensor([[10, 11, 12, 13, 14], [0, 1, 2, 3, 4]])
RELEVANT = [[12], [18, 3, 0, 16, 1, 17, 15]]
L2, L3, L5, L6 = math.log2(2), math.log2(3), math.log2(5), math.log2(6)  # log2(i+1), i = 1, 2, 4, 5
EXPECTED = {
    # user 0: recall = hits/1; user 1: hits/7 with 1, 2, 3 hits in the top 1, 3, 5
    "recall@1": (0.0, 1 / 7),
    "recall@3": (1.0, 2 / 7),
    "recall@5": (1.0, 3 / 7),
    # hits / K
    "precision@1": (0.0, 1.0),
    "precision@3": (1 / 3, 2 / 3),
    "precision@5": (1 / 5, 3 / 5),
    # user 0: DCG = 1/log2(4) = 0.5, IDCG over min(1, K) = 1 position = 1/log2(2) = 1
    # user 1: DCG = 1/log2(2) + 1/log2(3) [+ 1/log2(5) at K=5];
    #         IDCG over min(7, K) = K positions: 1/log2(2) + ... + 1/log2(K+1)
    "ndcg@1": (0.0, (1 / L2) / (1 / L2)),
    "ndcg@3": (0.5, (1 / L2 + 1 / L3) / (1 / L2 + 1 / L3 + 1 / 2)),
    "ndcg@5": (0.5, (1 / L2 + 1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / 2 + 1 / L5 + 1 / L6)),
    # user 0: P@3 * 1 = 1/3, divided by min(1, K) = 1
    # user 1: P@1 = 1, P@2 = 1, P@4 = 3/4, divided by min(7, K) = K
    "map@1": (0.0, 1.0 / 1),
    "map@3": (1 / 3, (1 + 1) / 3),
    "map@5": (1 / 3, (1 + 1 + 3 / 4) / 5),
}


def test_hand_computed_per_user():
    ptr, index = csr(RELEVANT)
    hits = hits_from_topk(TOPK, ptr, index)
    assert hits.tolist() == [[False, False, True, False, False], [True, True, False, True, False]]
    values = per_user_metrics(hits, ptr[1:] - ptr[:-1], ks=(1, 3, 5))
    assert set(values) == set(EXPECTED)
    for key, (u0, u1) in EXPECTED.items():
        assert values[key].dtype == torch.float64
        assert values[key].tolist() == pytest.approx([u0, u1], abs=1e-12), key


def test_hand_computed_metric_means():
    metric = RankingMetrics(ks=(1, 3, 5))
    metric.update(TOPK, *csr(RELEVANT))
    out = metric.compute()
    assert set(out) == set(EXPECTED)
    for key, (u0, u1) in EXPECTED.items():
        assert float(out[key]) == pytest.approx((u0 + u1) / 2, abs=1e-12), key


# ---------------------------------------------------------------- naive MMRec-style reference
def mmrec_reference(topk: np.ndarray, relevant: list[set[int]], ks) -> dict[str, float]:
    """Per-user Python loop building MMRec's bool matrix, then its numpy formulas over the full
    [U, max K] matrix (cumulative over ranks, read at column k-1), averaged over users."""
    pos_index = np.array([[item in rel for item in row] for row, rel in zip(topk, relevant)])
    pos_len = np.array([len(rel) for rel in relevant])
    n_cols = pos_index.shape[1]
    ranks = np.arange(1, n_cols + 1)
    cum = np.cumsum(pos_index, axis=1)
    recall = cum / pos_len[:, None]
    precision = cum / ranks
    dcg = np.cumsum(np.where(pos_index, 1.0 / np.log2(ranks + 1), 0.0), axis=1)
    idcg = np.cumsum(1.0 / np.log2(ranks + 1))[None, :].repeat(len(topk), axis=0)
    ap_sum = np.cumsum(precision * pos_index, axis=1)
    ap_norm = np.tile(ranks, (len(topk), 1)).astype(float)
    for u, n in enumerate(np.minimum(pos_len, n_cols)):  # freeze after min(|R|, K) positions
        idcg[u, n:] = idcg[u, n - 1]
        ap_norm[u, n:] = ap_norm[u, n - 1]
    per_metric = {"recall": recall, "precision": precision, "ndcg": dcg / idcg, "map": ap_sum / ap_norm}
    return {f"{m}@{k}": float(v[:, k - 1].mean()) for m, v in per_metric.items() for k in ks}


def random_users(gen: torch.Generator, n_users: int, n_items: int, max_rel: int):
    scores = torch.rand(n_users, n_items, generator=gen, dtype=torch.float64)
    sizes = torch.randint(1, max_rel + 1, (n_users,), generator=gen)
    relevant = [torch.randperm(n_items, generator=gen)[:s].tolist() for s in sizes.tolist()]
    return scores, relevant


def test_matches_mmrec_reference_over_batches():
    gen = torch.Generator().manual_seed(0)
    ks, n_items = (5, 10, 20, 50), 300
    metric = RankingMetrics(ks=ks)
    all_topk, all_relevant = [], []
    for batch_size in (17, 40, 3, 25):  # several batches accumulated, |R| from 1 to 80 (> max K)
        scores, relevant = random_users(gen, batch_size, n_items, max_rel=80)
        topk = torch.topk(scores, 60, dim=1).indices  # more columns than max(ks) is allowed
        metric.update(topk, *csr(relevant))
        all_topk.append(topk[:, :50].numpy())
        all_relevant += [set(r) for r in relevant]
    expected = mmrec_reference(np.concatenate(all_topk), all_relevant, ks)
    out = metric.compute()
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key].dtype == torch.float64
        assert float(out[key]) == pytest.approx(value, abs=1e-9), key


def test_update_dense_matches_csr_update():
    gen = torch.Generator().manual_seed(1)
    scores, relevant = random_users(gen, 30, 80, max_rel=25)
    target = torch.zeros(30, 80, dtype=torch.bool)
    for u, rel in enumerate(relevant):
        target[u, rel] = True
    dense, sparse = RankingMetrics(ks=(5, 20)), RankingMetrics(ks=(5, 20))
    dense.update_dense(scores, target)
    sparse.update(torch.topk(scores, 20, dim=1).indices, *csr(relevant))
    out_dense, out_sparse = dense.compute(), sparse.compute()
    for key in out_sparse:
        assert float(out_dense[key]) == pytest.approx(float(out_sparse[key]), abs=1e-12), key


# ---------------------------------------------------------------- hits_from_topk
@pytest.mark.parametrize("n_items", [50, 1_000_000])
def test_hits_from_topk_matches_dense_gather(n_items):
    gen = torch.Generator().manual_seed(2)
    n_users, k = 12, 20
    topk = torch.stack([torch.randperm(n_items, generator=gen)[:k] for _ in range(n_users)])
    # relevant sets overlap the top-k partly, in random (unsorted) order; one user has a single item
    relevant = []
    for u in range(n_users):
        from_topk = topk[u, torch.randperm(k, generator=gen)[: int(torch.randint(0, 8, (1,), generator=gen))]]
        others = torch.randint(0, n_items, (int(torch.randint(1, 10, (1,), generator=gen)),), generator=gen)
        rel = torch.unique(torch.cat([from_topk, others]))
        relevant.append(rel[torch.randperm(len(rel), generator=gen)].tolist())
    relevant[3] = [int(topk[3, 7])]
    expected = torch.stack([torch.isin(topk[u], torch.tensor(relevant[u])) for u in range(n_users)])
    if n_items <= 1000:  # dense reference: gather from a [B, n_items] relevance matrix
        dense = torch.zeros(n_users, n_items, dtype=torch.bool)
        for u, rel in enumerate(relevant):
            dense[u, rel] = True
        assert torch.equal(dense.gather(1, topk), expected)
    hits = hits_from_topk(topk, *csr(relevant))
    assert hits.dtype == torch.bool and torch.equal(hits, expected)
    assert hits[3].tolist() == [j == 7 for j in range(k)]


def test_hits_does_not_leak_across_rows():
    # item 5 is relevant to user 0 only; user 1 recommending it is not a hit
    hits = hits_from_topk(torch.tensor([[5, 6], [5, 7]]), *csr([[5], [9]]))
    assert hits.tolist() == [[True, False], [False, False]]


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize("seed", range(5))
def test_perfect_ranking(seed):
    gen = torch.Generator().manual_seed(seed)
    ks, n_items, n_users = (1, 5, 10, 20), 60, 25
    sizes = torch.randint(1, 40, (n_users,), generator=gen)
    relevant = [torch.randperm(n_items, generator=gen)[:s] for s in sizes.tolist()]
    # relevant items first, then the rest, each part in random order
    topk = torch.stack(
        [torch.cat([rel, torch.from_numpy(np.setdiff1d(np.arange(n_items), rel.numpy()))])[:20] for rel in relevant]
    )
    ptr, index = csr([r.tolist() for r in relevant])
    values = per_user_metrics(hits_from_topk(topk, ptr, index), sizes, ks)
    for k in ks:
        assert torch.allclose(values[f"recall@{k}"], sizes.clamp(max=k).double() / sizes, atol=1e-12)
        assert torch.allclose(values[f"ndcg@{k}"], torch.ones(n_users, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(values[f"map@{k}"], torch.ones(n_users, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(values[f"precision@{k}"], sizes.clamp(max=k).double() / k, atol=1e-12)


def test_batching_invariance_and_reset():
    gen = torch.Generator().manual_seed(3)
    scores, relevant = random_users(gen, 50, 100, max_rel=30)
    topk = torch.topk(scores, 50, dim=1).indices
    whole = RankingMetrics()
    whole.update(topk, *csr(relevant))
    expected = whole.compute()

    chunked = RankingMetrics()
    for lo, hi in [(0, 1), (1, 20), (20, 20), (20, 50)]:  # includes an empty batch
        chunked.update(topk[lo:hi], *csr(relevant[lo:hi]))
    out = chunked.compute()
    for key in expected:
        assert float(out[key]) == pytest.approx(float(expected[key]), abs=1e-12), key

    chunked.reset()
    with pytest.raises(RuntimeError, match="no user"), pytest.warns(UserWarning):
        chunked.compute()  # torchmetrics also warns that compute precedes update
    chunked.update(topk, *csr(relevant))
    assert all(float(chunked.compute()[k]) == pytest.approx(float(expected[k]), abs=1e-12) for k in expected)


def test_ddp_style_state_merge():
    gen = torch.Generator().manual_seed(4)
    scores, relevant = random_users(gen, 40, 90, max_rel=60)
    topk = torch.topk(scores, 50, dim=1).indices
    full, rank0, rank1 = RankingMetrics(), RankingMetrics(), RankingMetrics()
    full.update(topk, *csr(relevant))
    rank0.update(topk[:13], *csr(relevant[:13]))  # uneven halves, as a DistributedSampler may give
    rank1.update(topk[13:], *csr(relevant[13:]))
    # summing the states by hand (what dist_reduce_fx="sum" does) ...
    for name in ("sums", "n_users"):
        assert torch.allclose(getattr(rank0, name) + getattr(rank1, name), getattr(full, name), atol=1e-12)
    # ... and through torchmetrics' own reduction
    rank0.merge_state(rank1)
    merged, expected = rank0.compute(), full.compute()
    for key in expected:
        assert float(merged[key]) == pytest.approx(float(expected[key]), abs=1e-12), key


# ---------------------------------------------------------------- errors
def test_value_errors():
    with pytest.raises(ValueError, match="'hit'"):
        RankingMetrics(metrics=("recall", "hit"))
    with pytest.raises(ValueError, match="0"):
        RankingMetrics(ks=(0, 10))
    with pytest.raises(ValueError, match="-5"):
        RankingMetrics(ks=(-5,))
    with pytest.raises(ValueError, match="non-empty"):
        RankingMetrics(ks=())
    metric = RankingMetrics(ks=(5, 10))
    with pytest.raises(ValueError, match="max\\(ks\\)=10"):
        metric.update(torch.zeros(2, 5, dtype=torch.long), *csr([[1], [2]]))
    with pytest.raises(ValueError, match="no relevant item"):
        metric.update(torch.arange(20).view(2, 10), *csr([[1], []]))
    with pytest.raises(ValueError, match="no relevant item"):
        per_user_metrics(torch.zeros(2, 5, dtype=torch.bool), torch.tensor([3, 0]), ks=(5,))
    with pytest.raises(ValueError, match="target_ptr"):
        hits_from_topk(torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, 1]), torch.tensor([1]))
