"""LGMRec: closed forms on tiny data against dense naive code, gradients, a short ml100k run."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from src.models.lgmrec import LGMRec
from src.train import train
from tests.helpers import train_config


def tiny_data(n_users: int = 7, n_items: int = 9, dims=(5, 3), seed: int = 0) -> RecData:
    """Random interactions (user 0 has none in training) and features of the given dims."""
    rng = np.random.default_rng(seed)
    r = rng.random((n_users, n_items)) < 0.4
    r[0] = False
    r[1, :3] = True
    u, i = np.nonzero(r)
    none = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    feats = {name: rng.normal(size=(n_items, d)).astype(np.float32)
             for name, d in zip(["image", "text", "audio"], dims)}
    return RecData("tiny", n_users, n_items, Interactions(u.astype(np.int64), i.astype(np.int64)),
                   none, none, feats, fingerprint="tiny")


def dense_train(data: RecData) -> torch.Tensor:
    r = torch.zeros(data.n_users, data.n_items, dtype=torch.float64)
    r[torch.from_numpy(data.train.users), torch.from_numpy(data.train.items)] = 1.0
    return r


def model(data: RecData, **kw) -> LGMRec:
    torch.manual_seed(0)
    return LGMRec(data, GraphStore(data), embedding_dim=8, **kw)


def test_user_modal_profile_is_the_mean_over_training_items():
    data = tiny_data()
    net = model(data)
    x = torch.randn(data.n_items, 4)
    got = net.user_modal_profile(x)
    users, items = data.train.users, data.train.items
    for u in range(data.n_users):
        mine = items[users == u]
        expected = x[mine].mean(0) if len(mine) else torch.zeros(4)   # user 0: no items -> zeros
        assert torch.allclose(got[u], expected, atol=1e-6), u


def test_adjacency_is_dense_lightgcn_normalisation():
    data = tiny_data()
    net = model(data)
    r = dense_train(data)
    a = torch.zeros(data.n_users + data.n_items, data.n_users + data.n_items, dtype=torch.float64)
    a[: data.n_users, data.n_users:] = r
    a[data.n_users:, : data.n_users] = r.T
    d = a.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    expected = inv[:, None] * a * inv[None, :]
    eye = torch.eye(a.shape[0])
    assert torch.allclose(net.adj(eye).double(), expected, atol=1e-6)


def naive_forward(net: LGMRec, data: RecData) -> tuple[torch.Tensor, torch.Tensor]:
    """LGMRec's deterministic forward (no dropout, noise-free softmax) in dense float64."""
    n_u = data.n_users
    r = dense_train(data)
    a = torch.zeros(n_u + data.n_items, n_u + data.n_items, dtype=torch.float64)
    a[:n_u, n_u:], a[n_u:, :n_u] = r, r.T
    d = a.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    norm = inv[:, None] * a * inv[None, :]
    ego = torch.cat([net.user_emb, net.item_emb]).detach().double()
    layers = [ego]
    for _ in range(net.n_ui_layers):
        layers.append(norm @ layers[-1])
    cge = sum(layers) / len(layers)
    total = cge.clone()
    ghe = torch.zeros_like(cge)
    deg = r.sum(1, keepdim=True)
    for m, x in data.features.items():
        x = torch.from_numpy(x).double()
        item_f = x @ net.proj[m].detach().double()
        user_f = torch.where(deg > 0, (r @ item_f) / deg.clamp_min(1), torch.zeros_like(r @ item_f))
        h = torch.cat([user_f, item_f])
        for _ in range(net.n_mm_layers):
            h = norm @ h
        total += h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
        logits_i = x @ net.hyper[m].detach().double()
        hi = torch.softmax(logits_i / net.tau, 1)
        hu = torch.softmax((r @ logits_i) / net.tau, 1)
        items = cge[n_u:]
        for _ in range(net.n_hyper_layer):
            edges = hi.T @ items
            items, users = hi @ edges, hu @ edges
        ghe += torch.cat([users, items])
    total += net.alpha * ghe / ghe.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return total[:n_u], total[n_u:]


@pytest.mark.parametrize("dims,n_hyper_layer", [((5, 3), 1), ((5, 3, 4), 2), ((6,), 1)])
def test_forward_matches_dense_naive_code(dims, n_hyper_layer):
    data = tiny_data(dims=dims)
    net = model(data, n_hyper_layer=n_hyper_layer, hyper_num=3, eval_gumbel_noise=False)
    with torch.no_grad():
        users, items, parts = net.embeddings(training=False)
    exp_users, exp_items = naive_forward(net, data)
    assert len(parts) == len(dims)
    assert torch.allclose(users.double(), exp_users, atol=1e-5)
    assert torch.allclose(items.double(), exp_items, atol=1e-5)


def test_training_assignments_are_noisy_soft_and_rows_sum_to_one():
    data = tiny_data()
    net = model(data, hyper_num=5)
    torch.manual_seed(1)
    u1, i1 = net.hyperedge_assignments(0, noise=True)
    u2, _ = net.hyperedge_assignments(0, noise=True)
    assert u1.shape == (data.n_users, 5) and i1.shape == (data.n_items, 5)
    assert torch.allclose(u1.sum(1), torch.ones(data.n_users), atol=1e-5)
    assert torch.allclose(i1.sum(1), torch.ones(data.n_items), atol=1e-5)
    assert not torch.allclose(u1, u2)                       # Gumbel noise differs between draws
    d1, _ = net.hyperedge_assignments(0, noise=False)
    d2, _ = net.hyperedge_assignments(0, noise=False)
    assert torch.equal(d1, d2)


def test_info_nce_matches_a_row_by_row_computation():
    net = model(tiny_data())
    g = torch.Generator().manual_seed(3)
    anchor, cands = torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    idx = torch.tensor([2, 5, 5, 0])
    got = net.info_nce(anchor, cands[idx], cands)
    expected = 0.0
    for row, j in zip(anchor, idx):
        cos = [float(F.cosine_similarity(row, c, dim=0)) for c in cands]
        expected += -math.log(math.exp(cos[j] / 0.2) / sum(math.exp(c / 0.2) for c in cos))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_every_learnt_parameter_and_not_the_features():
    data = tiny_data()
    net = model(data)
    users, pos, neg = torch.tensor([1, 2, 3, 1]), torch.tensor([0, 1, 2, 4]), torch.tensor([5, 6, 7, 8])
    terms = net.loss_terms(users, pos, neg)
    assert set(terms) == {"bpr", "cl", "reg"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(b.requires_grad for b in net.buffers())
    assert {n for n, _ in net.named_parameters()} == {
        "user_emb", "item_emb", "proj.image", "proj.text", "hyper.image", "hyper.text"}
    assert net.full_scores(torch.tensor([0, 3])).shape == (2, data.n_items)


def test_one_modality_has_no_contrastive_term():
    terms = model(tiny_data(dims=(4,))).loss_terms(torch.tensor([1]), torch.tensor([0]), torch.tensor([5]))
    assert set(terms) == {"bpr", "reg"}


def test_id_only_dataset_is_refused():
    data = tiny_data()
    data.features = {}
    with pytest.raises(ValueError, match="needs modal features"):
        LGMRec(data, GraphStore(data))


def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    cfg = train_config(tmp_path, ["model=lgmrec", "trainer.max_epochs=3", "+trainer.limit_train_batches=8",
                                  "seed=1"])
    train(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    loss = log.dropna(subset=["train/loss"]).sort_values("epoch")["train/loss"].to_numpy()
    assert len(loss) == 3 and np.isfinite(loss).all() and loss[-1] < loss[0]
    assert np.isfinite(log.dropna(subset=["train/loss_cl"])["train/loss_cl"]).all()
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    seen = inter[inter.x_label < 2].groupby("userID").size()
    random_recall = float(np.mean(20 / (inter.itemID.nunique() - seen)))
    assert m["test"]["recall@20"] > 3 * random_recall
