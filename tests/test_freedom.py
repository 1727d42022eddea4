"""FREEDOM: frozen KNN item graph, per-epoch degree-sensitive pruning, losses, a short ml100k run."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from src.data.formats import Interactions, RecData, load_dataset
from src.data.graph_store import GraphStore
from src.models.freedom import FREEDOM, modality_graph_weights
from src.models.layers import SparseOp
from tests.model_checks import random_recall_at_20, short_run

ML100K_MODALITIES = {"text": "text_feat.npy", "kg": "kg_feat.npy"}


def toy_data(n_users: int = 10, n_items: int = 12, seed: int = 0) -> RecData:
    rng = np.random.default_rng(seed)
    pairs = {(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.35}
    pairs |= {(u, u % n_items) for u in range(n_users)} | {(i % n_users, i) for i in range(n_items)}
    users, items = map(np.array, zip(*sorted(pairs)))
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return RecData(name="toy", n_users=n_users, n_items=n_items,
                   train=Interactions(users.astype(np.int64), items.astype(np.int64)),
                   valid=empty, test=empty, fingerprint="toy",
                   features={"image": rng.standard_normal((n_items, 6)).astype(np.float32),
                             "text": rng.standard_normal((n_items, 5)).astype(np.float32)})


@pytest.fixture(scope="module")
def ml100k(ml100k_dir):
    data = load_dataset(ml100k_dir, "ml100k", ML100K_MODALITIES)
    return data, GraphStore(data)


def dense_knn_reference(x: np.ndarray, k: int, include_self: bool) -> np.ndarray:
    """MMRec's construction written densely: cosine, top-k per row, D^-1/2 A D^-1/2 (row sums)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    if not include_self:
        np.fill_diagonal(s, -np.inf)
    a = np.zeros_like(s)
    a[np.arange(len(s))[:, None], np.argsort(-s, axis=1)[:, :k]] = 1.0
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :]


def csr_of(op: SparseOp) -> sp.csr_matrix:
    return sp.csr_matrix((op.val.numpy(), op.col.numpy(), op.crow.numpy()), shape=op.shape)


# ---------------------------------------------------------------- item-item graph

def test_modality_weights_follow_the_paper_roles():
    assert modality_graph_weights(["image", "text"], 0.1) == {"image": 0.1, "text": 0.9}
    assert modality_graph_weights(["text", "image"], 0.1) == {"image": 0.1, "text": 0.9}
    assert modality_graph_weights(["text", "kg"], 0.1) == {"kg": 0.1, "text": 0.9}
    assert modality_graph_weights(["a", "b"], 0.3) == {"a": 0.3, "b": pytest.approx(0.7)}
    assert modality_graph_weights(["a"], 0.1) == {"a": 1.0}
    assert modality_graph_weights(["a", "b", "c"], 0.1) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert modality_graph_weights(["a", "b"], 0.1, {"a": 0.5, "b": 2.0}) == {"a": 0.5, "b": 2.0}
    with pytest.raises(ValueError, match="exactly the dataset's modalities"):
        modality_graph_weights(["a", "b"], 0.1, {"a": 1.0})


@pytest.mark.parametrize("include_self", [True, False])
def test_item_graph_matches_dense_reference(include_self):
    data = toy_data()
    model = FREEDOM(data, GraphStore(data), embedding_dim=8, knn_k=3, knn_include_self=include_self,
                    mm_image_weight=0.25)
    expected = (0.25 * dense_knn_reference(data.features["image"], 3, include_self)
                + 0.75 * dense_knn_reference(data.features["text"], 3, include_self))
    np.testing.assert_allclose(csr_of(model.item_graph).toarray(), expected, rtol=1e-6, atol=1e-7)


def test_ml100k_item_graph_rows_are_stochastic_and_hold_self(ml100k):
    data, graphs = ml100k
    model = FREEDOM(data, graphs)
    g = csr_of(model.item_graph)
    # every normalised KNN graph has k entries of 1/k per row, and the weights sum to one
    np.testing.assert_allclose(np.asarray(g.sum(1)).ravel(), 1.0, rtol=1e-5)
    assert (g.diagonal() > 0).all()                               # MMRec: self is a neighbour
    assert g.nnz <= 2 * 10 * data.n_items


# ---------------------------------------------------------------- degree-sensitive pruning

def test_sampling_weights_are_inverse_sqrt_degrees():
    data = toy_data()
    model = FREEDOM(data, GraphStore(data), embedding_dim=8, knn_k=3)
    r = data.train_matrix()
    du, di = np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()
    u, i = model.edges.numpy()
    np.testing.assert_allclose(model.edge_weight.numpy(), 1 / np.sqrt(du[u] * di[i]), rtol=1e-6)


def test_pruning_draws_as_torch_multinomial():
    """The exponential race is MMRec's `torch.multinomial(weights, n, replacement=False)` draw."""
    data = toy_data()
    model = FREEDOM(data, GraphStore(data), embedding_dim=8, knn_k=3, dropout=0.6)
    n_keep = int(model.edges.shape[1] * 0.4)
    torch.manual_seed(11)
    expected = model.edges[:, torch.multinomial(model.edge_weight, n_keep)]
    torch.manual_seed(11)
    adj = model.sample_pruned_adjacency()
    idx = adj._indices()
    kept = idx[:, idx[0] < model.n_users]
    got = {(int(a), int(b) - model.n_users) for a, b in kept.T}
    assert got == {(int(a), int(b)) for a, b in expected.T}


def test_pruned_graph_count_symmetry_and_normalisation(ml100k):
    data, graphs = ml100k
    model = FREEDOM(data, graphs, dropout=0.8)
    n_u = data.n_users
    torch.manual_seed(0)
    adj = model.sample_pruned_adjacency()
    a = sp.csr_matrix((adj._values().numpy(), adj._indices().numpy()), shape=adj.shape)
    n_keep = int(len(data.train) * (1.0 - 0.8))      # MMRec: int(|E| * (1 - dropout)) = 15957
    assert a.nnz == 2 * n_keep
    assert abs(a - a.T).max() == 0                                  # symmetric
    assert a[:n_u, :n_u].nnz == 0 and a[n_u:, n_u:].nnz == 0          # bipartite
    block = a[:n_u, n_u:].tocoo()
    assert sp.csr_matrix(data.train_matrix()).multiply(a[:n_u, n_u:] != 0).nnz == n_keep  # kept ⊂ train
    # re-normalised on the kept edges only: 1/sqrt(d'_u d'_i)
    kept = sp.csr_matrix((np.ones(block.nnz), (block.row, block.col)), shape=block.shape)
    du, di = np.asarray(kept.sum(1)).ravel(), np.asarray(kept.sum(0)).ravel()
    np.testing.assert_allclose(block.data, 1 / np.sqrt(du[block.row] * di[block.col]), rtol=1e-6)


def test_pruning_changes_each_epoch_and_repeats_under_a_seed():
    data = toy_data()
    model = FREEDOM(data, GraphStore(data), embedding_dim=8, knn_k=3, dropout=0.5)

    def draw() -> set:
        model.on_train_epoch_start(0)
        return {tuple(x) for x in np.argwhere(csr_of(model.train_adj).toarray() != 0)}

    torch.manual_seed(3)
    first, second = draw(), draw()
    torch.manual_seed(3)
    again = draw()
    assert first == again and first != second
    model.dropout = 0.0
    model.on_train_epoch_start(1)
    assert model.train_adj is model.full_adj


# ---------------------------------------------------------------- forward, losses, gradients

def test_scores_and_losses_match_a_dense_recomputation():
    data = toy_data()
    graphs = GraphStore(data)
    torch.manual_seed(0)
    model = FREEDOM(data, graphs, embedding_dim=8, knn_k=3, n_mm_layers=2, n_ui_layers=2,
                    reg_weight=0.3, dropout=0.5)
    full = graphs.user_item_adjacency().to_dense().double()
    s = torch.from_numpy(csr_of(model.item_graph).toarray()).double()
    e_u, e_i = model.user_emb.detach().double(), model.item_emb.detach().double()

    def encode(adj):
        ego = torch.cat([e_u, e_i])
        mean = (ego + adj @ ego + adj @ adj @ ego) / 3
        return mean[: data.n_users], mean[data.n_users:] + s @ s @ e_i

    u_all, i_all = encode(full)
    np.testing.assert_allclose(model.full_scores(torch.arange(data.n_users)).detach().numpy(),
                               (u_all @ i_all.T).numpy(), rtol=1e-5, atol=1e-6)

    model.on_train_epoch_start(0)
    pruned = torch.from_numpy(csr_of(model.train_adj).toarray()).double()
    users, pos, neg = torch.tensor([0, 3, 3]), torch.tensor([0, 5, 2]), torch.tensor([7, 1, 9])
    terms = model.loss_terms(users, pos, neg)
    u_all, i_all = encode(pruned)
    u = u_all[users]

    def bpr(p, n):
        return float(np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1)).numpy()))))

    assert set(terms) == {"bpr", "bpr_image", "bpr_text"}
    assert terms["bpr"].item() == pytest.approx(bpr(i_all[pos], i_all[neg]), rel=1e-5)
    for m in ("image", "text"):
        w, b = model.proj[m].weight.detach().double(), model.proj[m].bias.detach().double()
        x = torch.from_numpy(data.features[m]).double()
        f = x @ w.T + b
        assert terms[f"bpr_{m}"].item() == pytest.approx(0.3 * bpr(f[pos], f[neg]), rel=1e-5)


@pytest.mark.parametrize("finetune", [True, False])
def test_gradients_reach_every_trainable_parameter(finetune):
    data = toy_data()
    model = FREEDOM(data, GraphStore(data), embedding_dim=8, knn_k=3, reg_weight=1e-2,
                    finetune_features=finetune)
    users, pos, neg = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    sum(model.loss_terms(users, pos, neg).values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("features."):
            assert p.requires_grad is finetune
            if not finetune:
                assert p.grad is None, name
                continue
        if name.startswith("proj.") and name.endswith(".bias"):
            # the same bias is added to the positive and the negative item: BPR cancels it
            assert p.grad is not None and float(p.grad.abs().max()) < 1e-7, name
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_refuses_id_only_data():
    data = toy_data()
    data.features = {}
    with pytest.raises(ValueError, match="needs modal features"):
        FREEDOM(data, GraphStore(data))


# ---------------------------------------------------------------- short run on ml100k

def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    metrics, losses = short_run(tmp_path, ["model=freedom", "trainer.max_epochs=3", "seed=1"])
    loss = losses["train/loss"].to_numpy()
    assert np.isfinite(losses.to_numpy()).all() and len(loss) == 3 and loss[-1] < loss[0]
    assert {"train/loss_bpr", "train/loss_bpr_text", "train/loss_bpr_kg"} <= set(losses.columns)
    assert metrics["test"]["recall@20"] > 3 * random_recall_at_20(ml100k_dir)
