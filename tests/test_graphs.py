"""Graph builders against dense brute-force references (float64, small random inputs)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from src.data import graphs
from src.data.graphs import (CSROperator, cosine_topk, jaccard_topk, knn_graphs, profile_sums,
                             row_normalize, sparse_propagate, sym_norm, sym_norm_with_self_loops,
                             topk_adjacency, user_item_adjacency)
from tests.graph_refs import random_binary, ref_cosine, ref_jaccard, ref_topk

DT = torch.float64


# --------------------------------------------------------------------------- cosine KNN

@pytest.mark.parametrize("chunk_size", [3, 7, 37, 100])
@pytest.mark.parametrize("k", [1, 5, 36, 50])
def test_cosine_topk_matches_brute_force(chunk_size, k):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 6))
    idx, val = cosine_topk(torch.tensor(x, dtype=DT), k, chunk_size=chunk_size)
    ref_i, ref_v = ref_topk(ref_cosine(x), min(k, 36))
    assert idx.shape == (37, min(k, 36)) and idx.dtype == torch.long and val.dtype == DT
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(val.numpy(), ref_v, atol=1e-12)
    assert not (idx == torch.arange(37)[:, None]).any(), "self appears in a neighbour list"


def test_cosine_topk_small_n_and_float32_default():
    x = torch.randn(4, 3)
    idx, val = cosine_topk(x, 10)
    assert idx.shape == (4, 3) and val.dtype == torch.float32
    assert sorted(idx[0].tolist()) == [1, 2, 3]
    idx, val = cosine_topk(torch.randn(1, 3), 10)
    assert idx.shape == (1, 0)


def test_cosine_topk_zero_rows_give_zero_similarity_and_no_nan():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 4))
    x[[3, 7]] = 0
    idx, val = cosine_topk(torch.tensor(x), 4, chunk_size=5)
    assert torch.isfinite(val).all()
    assert idx[3].tolist() == [0, 1, 2, 4] and (val[3] == 0).all()      # all ties: lowest indices
    ref_i, ref_v = ref_topk(ref_cosine(x), 4)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(val.numpy(), ref_v, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [2, 5, 64])
def test_cosine_topk_ties_go_to_the_lower_index(chunk_size):
    # rows with exactly four ones in 8 dims have norm 2, so every cosine is an exact multiple
    # of 1/4 whatever the summation order: many exact ties
    rng = np.random.default_rng(2)
    x = np.zeros((30, 8))
    for row in x:
        row[rng.choice(8, 4, replace=False)] = 1
    x[5] = x[11] = x[20] = x[2]                                           # duplicates tie at 1
    idx, val = cosine_topk(torch.tensor(x), 6, chunk_size=chunk_size)
    ref_i, ref_v = ref_topk(ref_cosine(x), 6)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_array_equal(val.numpy(), ref_v)
    assert idx[2, :3].tolist() == [5, 11, 20]


def test_cosine_topk_with_self_allowed():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 3))
    idx, val = cosine_topk(torch.tensor(x), 20, exclude_self=False, chunk_size=4)
    ref_i, _ = ref_topk(ref_cosine(x), 9, exclude_self=False)
    assert idx.shape == (9, 9)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    assert (idx[:, 0] == torch.arange(9)).all()


def test_cosine_topk_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        cosine_topk(torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), 1)
    with pytest.raises(ValueError, match="positive integer"):
        cosine_topk(torch.randn(5, 2), 0)
    with pytest.raises(ValueError, match="2-D"):
        cosine_topk(torch.randn(5), 1)


# --------------------------------------------------------------------------- user / item KNN

@pytest.mark.parametrize("method", ["direct", "gram"])
@pytest.mark.parametrize("chunk_size", [4, 1000])
def test_knn_graphs_match_brute_force(method, chunk_size):
    rng = np.random.default_rng(4)
    n_users, n_items = 23, 17
    r = random_binary(n_users, n_items, 0.35, seed=5)
    r[6] = 0                                    # a user with no items: zero profile
    # distinct item sets: identical profiles would tie only up to float rounding
    assert len({tuple(row) for row in r}) == n_users
    x = rng.standard_normal((n_items, 5))
    x[3] = 0                                    # an item with zero features
    out = knn_graphs(sp.csr_matrix(r), torch.tensor(x), 4, method=method, chunk_size=chunk_size)

    ref_i, ref_v = ref_topk(ref_cosine(x), 4)
    np.testing.assert_array_equal(out["items"][0].numpy(), ref_i)
    np.testing.assert_allclose(out["items"][1].numpy(), ref_v, atol=1e-12)

    deg = r.sum(1, keepdims=True)
    profiles = np.divide(r @ x, deg, out=np.zeros((n_users, 5)), where=deg > 0)
    ref_i, ref_v = ref_topk(ref_cosine(profiles), 4)
    np.testing.assert_array_equal(out["users"][0].numpy(), ref_i)
    np.testing.assert_allclose(out["users"][1].numpy(), ref_v, atol=1e-12)
    assert out["users"][0][6].tolist() == [0, 1, 2, 3]


def test_profile_sums_is_the_mean_over_the_row_items():
    r = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [0, 2, 0]], dtype=np.float64))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=DT)
    p = profile_sums(r, x)
    np.testing.assert_allclose(p.numpy(), [[3, 4], [0, 0], [3, 4]])     # r read as binary
    with pytest.raises(ValueError, match="one feature row per column"):
        profile_sums(r, x[:2])


def test_knn_graphs_auto_picks_gram_only_when_cheaper():
    from src.data.knn import choose_method
    rng = np.random.default_rng(6)
    r = sp.random(4000, 200, density=0.01, format="csr", random_state=1)
    assert choose_method(r, torch.zeros(200, 4096)) == "gram"           # many users, wide features
    assert choose_method(r, torch.zeros(200, 8)) == "direct"
    assert choose_method(r, torch.zeros(200, 4096), max_gram_bytes=1000) == "direct"
    del rng


# --------------------------------------------------------------------------- adjacency

def test_topk_adjacency_binary_and_weighted():
    idx = torch.tensor([[1, 2], [0, 3], [3, 0]])
    a = topk_adjacency(idx, 4)
    assert a.is_coalesced() and a.shape == (3, 4) and a.dtype == torch.float32
    expected = np.zeros((3, 4))
    expected[[0, 0, 1, 1, 2, 2], [1, 2, 0, 3, 3, 0]] = 1
    np.testing.assert_array_equal(a.to_dense().numpy(), expected)
    w = topk_adjacency(idx, 4, values=torch.tensor([[0.5, 0.25], [1, 2], [3, 4]], dtype=DT))
    assert w.dtype == DT and w.to_dense()[2, 0] == 4
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        topk_adjacency(torch.tensor([[4]]), 4)
    with pytest.raises(ValueError, match="twice"):
        topk_adjacency(torch.tensor([[1, 1]]), 4)


# --------------------------------------------------------------------------- Jaccard

@pytest.mark.parametrize("block_elements", [1, 60, 1 << 24])   # 1: one row per padded block
@pytest.mark.parametrize("chunk_size,max_products", [(8192, 1 << 25), (3, 1 << 25), (8192, 1)])
@pytest.mark.parametrize("k", [1, 3, 50])
def test_jaccard_topk_matches_set_arithmetic(monkeypatch, block_elements, chunk_size, max_products, k):
    monkeypatch.setattr(graphs, "DENSE_BLOCK_ELEMENTS", block_elements)
    r = random_binary(40, 12, 0.2, seed=7)                          # small degrees: many ties
    r[9] = 0                                                         # no entries: no neighbours
    j = jaccard_topk(sp.csr_matrix(r), k, chunk_size=chunk_size, max_products=max_products)
    assert j.is_coalesced() and j.shape == (40, 40) and j.dtype == DT
    dense = j.to_dense().numpy()
    np.testing.assert_allclose(dense, ref_jaccard(r, k), rtol=0, atol=1e-15)
    assert not dense[9].any() and not dense[:, 9].any()
    assert not np.diag(dense).any()
    assert (j._values() > 0).all()                                   # no zero padding


def test_jaccard_topk_tie_break_by_lower_column_and_no_padding():
    # row 0 = {0, 1}; rows 1..4 each share one item with row 0 and have one more item:
    # all four score 1/3, so k=2 keeps rows 1 and 2. Row 5 shares nothing: no neighbours.
    r = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0],
                                [1, 0, 1, 0, 0, 0, 0],
                                [0, 1, 0, 1, 0, 0, 0],
                                [1, 0, 0, 0, 1, 0, 0],
                                [0, 1, 0, 0, 0, 1, 0],
                                [0, 0, 0, 0, 0, 0, 1]], dtype=np.float32))
    j = jaccard_topk(r, 2)
    assert j.dtype == torch.float32
    d = j.to_dense()
    assert torch.nonzero(d[0]).squeeze(1).tolist() == [1, 2]
    assert torch.allclose(d[0, [1, 2]], torch.tensor([1 / 3, 1 / 3]))
    assert d[5].count_nonzero() == 0
    # row 1 = {0, 2}: only rows 0 and 3 share an item with it -> fewer than k is fine
    assert torch.nonzero(d[1]).squeeze(1).tolist() == [0, 3]


def test_jaccard_topk_counts_a_binary_pattern():
    r = sp.csr_matrix(np.array([[3.0, 0, 1], [1, 1, 0]]))            # values are ignored
    d = jaccard_topk(r, 5).to_dense()
    assert d[0, 1] == pytest.approx(1 / 3) and d[1, 0] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- normalisations

def random_sparse_nonneg(n: int, seed: int, zero_rows=(2,)) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
    a[list(zero_rows)] = 0
    return torch.tensor(a).to_sparse(), a


def test_sym_norm_matches_dense_formula():
    a_t, a = random_sparse_nonneg(9, seed=8)
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    expected = inv[:, None] * a * inv[None, :]
    out = sym_norm(a_t)
    assert out.is_coalesced() and out.dtype == DT
    np.testing.assert_allclose(out.to_dense().numpy(), expected, atol=1e-15)
    assert torch.isfinite(out._values()).all() and not out.to_dense()[2].any()


def test_sym_norm_with_self_loops_is_spumr_eq2_on_a_knn_graph():
    rng = np.random.default_rng(9)
    x = torch.tensor(rng.standard_normal((15, 4)))
    idx, _ = cosine_topk(x, 3)
    out = sym_norm_with_self_loops(topk_adjacency(idx, 15).to(DT)).to_dense().numpy()
    expected = np.zeros((15, 15))
    for u in range(15):
        for v in list(idx[u].tolist()) + [u]:
            expected[u, v] = 1 / (np.sqrt(3 + 1) * np.sqrt(3 + 1))    # |N_u| = |N_v| = k = 3
    np.testing.assert_allclose(out, expected, atol=1e-15)


def test_sym_norm_with_self_loops_general_matrix():
    a_t, a = random_sparse_nonneg(8, seed=10)
    a_hat = a + np.eye(8)
    inv = 1 / np.sqrt(a.sum(1) + 1)
    expected = inv[:, None] * a_hat * inv[None, :]
    np.testing.assert_allclose(sym_norm_with_self_loops(a_t).to_dense().numpy(), expected, atol=1e-15)


@pytest.mark.parametrize("self_weight", [None, 1.0, 0.5])
def test_row_normalize(self_weight):
    a_t, a = random_sparse_nonneg(10, seed=11, zero_rows=(4,))
    out = row_normalize(a_t, self_weight=self_weight).to_dense().numpy()
    a_plus = a + (self_weight or 0) * np.eye(10)
    s = a_plus.sum(1, keepdims=True)
    expected = np.divide(a_plus, s, out=np.zeros_like(a_plus), where=s > 0)
    np.testing.assert_allclose(out, expected, atol=1e-15)
    sums = out.sum(1)
    if self_weight is None:
        assert sums[4] == 0
        np.testing.assert_allclose(np.delete(sums, 4), 1)
    else:
        np.testing.assert_allclose(sums, 1)


def test_normalisations_reject_bad_input():
    neg = torch.tensor([[0.0, -1.0], [1.0, 0.0]]).to_sparse()
    for fn in (sym_norm, sym_norm_with_self_loops, row_normalize):
        with pytest.raises(ValueError, match="negative"):
            fn(neg)
    with pytest.raises(ValueError, match="square"):
        sym_norm(torch.ones(2, 3).to_sparse())
    with pytest.raises(TypeError, match="sparse"):
        sym_norm(torch.ones(2, 2))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_csr_input_is_accepted():
    a_t, a = random_sparse_nonneg(6, seed=12)
    np.testing.assert_allclose(sym_norm(a_t.to_sparse_csr()).to_dense().numpy(),
                               sym_norm(a_t).to_dense().numpy())


# --------------------------------------------------------------------------- bipartite graph

def test_user_item_adjacency_matches_lightgcn_formula():
    r = random_binary(7, 5, 0.35, seed=13)
    r[3] = 0                                   # isolated user
    r[:, 1] = 0                                # isolated item
    adj = user_item_adjacency(sp.csr_matrix(r))
    assert adj.shape == (12, 12) and adj.dtype == DT and adj.is_coalesced()
    dense = adj.to_dense().numpy()
    np.testing.assert_allclose(dense, dense.T)
    a = np.block([[np.zeros((7, 7)), r], [r.T, np.zeros((5, 5))]])
    deg = a.sum(1)
    np.testing.assert_array_equal((dense != 0).sum(1), deg)          # one entry per edge
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    np.testing.assert_allclose(dense, inv[:, None] * a * inv[None, :], atol=1e-15)
    assert not dense[3].any() and not dense[7 + 1].any()
    assert not np.diag(dense).any()


def test_user_item_adjacency_float32_by_default():
    r = sp.csr_matrix(np.eye(3, dtype=np.float32))
    assert user_item_adjacency(r).dtype == torch.float32


# --------------------------------------------------------------------------- propagation

@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_sparse_propagate_matches_dense_powers(readout, n_layers):
    a_t, a = random_sparse_nonneg(8, seed=14)
    a_t = sym_norm(a_t)
    a_d = a_t.to_dense().numpy()
    x = torch.randn(8, 3, dtype=DT, requires_grad=True)
    out = sparse_propagate(a_t, x, n_layers, readout=readout)
    layers = [np.linalg.matrix_power(a_d, l) @ x.detach().numpy() for l in range(n_layers + 1)]
    expected = layers[-1] if readout == "last" else np.mean(layers, axis=0)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-12)
    out.sum().backward()                                             # gradients reach x
    ops = [np.linalg.matrix_power(a_d, l) for l in range(n_layers + 1)]
    op = ops[-1] if readout == "last" else np.mean(ops, axis=0)
    np.testing.assert_allclose(x.grad.numpy(), op.T @ np.ones((8, 3)), atol=1e-12)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_csr_operator_matches_coo_forward_and_gradient(readout):
    a_t, _ = random_sparse_nonneg(10, seed=15)                        # not symmetric: A^T matters
    a_t = row_normalize(a_t, self_weight=1.0)
    x1 = torch.randn(10, 4, dtype=DT, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out1 = sparse_propagate(a_t, x1, 3, readout)
    out2 = sparse_propagate(CSROperator(a_t).to("cpu"), x2, 3, readout)
    np.testing.assert_allclose(out2.detach().numpy(), out1.detach().numpy(), atol=1e-12)
    weights = torch.randn(10, 4, dtype=DT)
    (out1 * weights).sum().backward()
    (out2 * weights).sum().backward()
    np.testing.assert_allclose(x2.grad.numpy(), x1.grad.numpy(), atol=1e-12)


def test_sparse_propagate_rejects_bad_arguments():
    a = torch.eye(2).to_sparse()
    with pytest.raises(ValueError, match="readout"):
        sparse_propagate(a, torch.ones(2, 1), 1, readout="sum")
    with pytest.raises(ValueError, match="n_layers"):
        sparse_propagate(a, torch.ones(2, 1), -1)
