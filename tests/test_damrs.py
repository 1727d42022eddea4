"""DA-MRS: graph builders and loss pieces against brute-force / MMRec-style code, a short ml100k run."""
from __future__ import annotations

import json
import math

import hydra
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from src.models.damrs import (DAMRS, behaviour_adjacency, co_interaction_topk, denoised_knn,
                              mean_cosine, symmetric_bernoulli_kl)
from src.train import train
from tests.helpers import train_config


def random_binary(n_users: int, n_items: int, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n_users, n_items)) < p).astype(np.int64)


def tiny_data(n_users: int = 12, n_items: int = 30, dims=(6, 4), seed: int = 0) -> RecData:
    rng = np.random.default_rng(seed)
    r = random_binary(n_users, n_items, 0.3, seed)
    u, i = np.nonzero(r)
    none = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    feats = {name: np.abs(rng.normal(size=(n_items, d))).astype(np.float32)
             for name, d in zip(["image", "text", "audio"], dims)}
    return RecData("tiny", n_users, n_items, Interactions(u, i), none, none, feats, fingerprint="tiny")


def model(data: RecData, **kw) -> DAMRS:
    torch.manual_seed(0)
    kw = {"knn_k": 4, "n_pseudo": 3, **kw}
    return DAMRS(data, GraphStore(data), embedding_dim=8, **kw)


# --------------------------------------------------------------------------- behaviour graph

@pytest.mark.parametrize("k,min_count,chunk", [(2, 2, 5), (3, 1, 2048), (1, 3, 7)])
def test_co_interaction_topk_equals_a_brute_force_count(k, min_count, chunk):
    r = random_binary(25, 16, 0.35, seed=k)
    got = co_interaction_topk(sp.csr_matrix(r), k, min_count, chunk_size=chunk).to_dense().numpy()
    n = r.shape[1]
    expected = np.zeros((n, n))
    for i in range(n):
        counts = []
        for j in range(n):
            c = sum(1 for u in range(r.shape[0]) if r[u, i] and r[u, j])
            if j != i and c >= min_count:
                counts.append((-c, j))
        for neg_c, j in sorted(counts)[:k]:          # most co-interactions first, then lower index
            expected[i, j] = -neg_c
    np.testing.assert_array_equal(got, expected)


def test_behaviour_adjacency_is_dense_self_loop_normalisation():
    counts = co_interaction_topk(sp.csr_matrix(random_binary(20, 10, 0.4, seed=5)), 2, 2)
    a = (counts.to_dense() > 0).double() + torch.eye(10, dtype=torch.float64)   # counts ignored
    d = a.sum(1)
    expected = a / d.sqrt()[:, None] / d.sqrt()[None, :]
    assert torch.allclose(behaviour_adjacency(counts).to_dense().double(), expected, atol=1e-6)


# --------------------------------------------------------------------------- modal graphs

def test_mean_cosine_is_the_mean_of_the_dense_cosine_matrix():
    x = torch.randn(13, 5, dtype=torch.float64)
    xn = x / x.norm(dim=1, keepdim=True)
    assert mean_cosine(x) == pytest.approx(float((xn @ xn.T).mean()), rel=1e-12)


def mmrec_style_knn(feats: list[torch.Tensor], k: int) -> list[set[tuple[int, int]]]:
    """MMRec's get_knn_adj_mat written out: dense sims, zero where any modality is below its
    mean, item_num = non-zeros of the last modality's row, top-min(k, item_num) per modality."""
    sims = []
    for x in feats:
        xn = x / x.norm(dim=1, keepdim=True)
        sims.append(xn @ xn.T)
    masks = [s < s.mean() for s in sims]
    for s in sims:
        for mask in masks:
            s[mask] = 0
    out = [set() for _ in feats]
    for i in range(feats[0].shape[0]):
        item_num = len(torch.nonzero(sims[-1][i]))
        for m, s in enumerate(sims):
            for j in torch.topk(s[i], min(k, item_num)).indices.tolist():
                out[m].add((i, j))
    return out


@pytest.mark.parametrize("n_modalities,chunk", [(2, 7), (3, 1024)])
def test_denoised_knn_matches_mmrec_style_dense_code(n_modalities, chunk):
    g = torch.Generator().manual_seed(n_modalities)
    # non-negative features (like CNN features), so every mean cosine is positive as in MMRec's data
    feats = [torch.rand(40, d, generator=g, dtype=torch.float64) ** 3 for d in (6, 4, 5)[:n_modalities]]
    got = denoised_knn(feats, 5, chunk_size=chunk)
    expected = mmrec_style_knn(feats, 5)
    for a, e in zip(got, expected):
        pairs = set(map(tuple, a.coalesce().indices().T.tolist()))
        assert pairs == e
        assert torch.all(a.coalesce().values() == 1)
    degrees = torch.stack([a.to_dense().sum(1) for a in got])
    assert (degrees <= 5).all() and (degrees < 5).any()    # some items have fewer candidates than k


def test_modal_graphs_in_the_model_are_sym_normalised_row_degree():
    data = tiny_data()
    net = model(data)
    eye = torch.eye(data.n_items)
    feats = [torch.from_numpy(x) for x in data.features.values()]
    for op, raw in zip(net.views[:-1], denoised_knn(feats, 4)):
        a = raw.to_dense().double()
        d = a.sum(1)
        expected = a / d.sqrt()[:, None] / d.sqrt()[None, :]
        assert torch.allclose(op(eye).double(), expected, atol=1e-6)


# --------------------------------------------------------------------------- loss pieces

def test_symmetric_kl_equals_mmrec_formula():
    def kl(p1, p2):
        return p1 * torch.log(p1) - p1 * torch.log(p2) + (1 - p1) * torch.log(1 - p1) - (1 - p1) * torch.log(1 - p2)
    za, zb = torch.randn(50, dtype=torch.float64) * 3, torch.randn(50, dtype=torch.float64) * 3
    pa, pb = torch.sigmoid(za), torch.sigmoid(zb)
    assert torch.allclose(symmetric_bernoulli_kl(za, zb), kl(pa, pb) + kl(pb, pa), atol=1e-10)
    assert torch.isfinite(symmetric_bernoulli_kl(torch.tensor([60.0]), torch.tensor([-60.0]))).all()


def test_feedback_weights_match_a_per_triple_computation():
    net = model(tiny_data())
    g = torch.Generator().manual_seed(2)
    u = torch.randn(6, 8, generator=g)
    pos = [torch.randn(6, 8, generator=g) for _ in range(3)]
    neg = [torch.randn(6, 8, generator=g) for _ in range(3)]
    w_pos, w_neg = net.feedback_weights(u, pos, neg)
    sig = lambda x: 1 / (1 + math.exp(-x))
    cos_dot = lambda a, b: float(a @ (b / b.norm()))
    n_all = [sig(cos_dot(u[t], v[t])) for v in neg for t in range(6)]
    n_mean = sum(n_all) / len(n_all)
    for t in range(6):
        p = [sig(cos_dot(u[t], v[t])) for v in pos]
        mean = sum(p) / 3
        var = sum((x - mean) ** 2 for x in p) / 2               # unbiased, as torch.var
        assert float(w_pos[t]) == pytest.approx(min(max(mean * math.exp(-var) ** 2, 0), 1), rel=1e-5)
        expected_neg = min(max(max(p) - n_mean, 0), 1) if mean < n_mean else 0.0
        assert float(w_neg[t]) == pytest.approx(expected_neg, abs=1e-6)


def test_pseudo_labels_and_neighbour_discrimination_match_naive_code():
    net = model(tiny_data(), n_pseudo=3)
    g = torch.Generator().manual_seed(4)
    views = [torch.randn(30, 8, generator=g) for _ in range(3)]
    items = torch.tensor([4, 0, 17])
    labels = net.pseudo_labels(items, views)

    def cos(a, b):
        return float(F.cosine_similarity(a, b, dim=0))
    probs = []
    for v in views:
        rows = []
        for i in items.tolist():
            e = [math.exp(cos(v[i], v[j])) for j in range(30)]
            rows.append([x / sum(e) for x in e])
        probs.append(rows)
    for x, (multi, single) in enumerate(labels):
        loss = 0.0
        for r, i in enumerate(items.tolist()):
            score = [sum(probs[y][r][j] for y in range(3)) + probs[x][r][j] for j in range(30)]
            exp_multi = sorted(range(30), key=lambda j: -score[j])[:3]
            rest = [j for j in range(30) if j not in exp_multi]
            exp_single = sorted(rest, key=lambda j: -probs[x][r][j])[:3]
            assert sorted(multi[r].tolist()) == sorted(exp_multi)
            assert sorted(single[r].tolist()) == sorted(exp_single)
            s = [math.exp(cos(views[x][i], views[x][j]) / 0.2) for j in range(30)]
            s_multi, s_single = sum(s[j] for j in exp_multi), sum(s[j] for j in exp_single)
            loss += -math.log(s_multi / sum(s) + 1e-9) - math.log(s_single / (sum(s) - s_multi) + 1e-9)
        got = net.neighbour_discrimination(views[x][items], views[x], multi, single)
        assert float(got) == pytest.approx(loss / 3, rel=1e-5)


def test_gradients_shapes_and_terms():
    data = tiny_data(dims=(6, 4, 5))
    net = model(data)
    assert len(net.views) == 4                               # three modalities + behaviour
    users, pos, neg = torch.tensor([0, 1, 1, 5]), torch.tensor([0, 3, 4, 9]), torch.tensor([2, 7, 8, 29])
    terms = net.loss_terms(users, pos, neg)
    assert set(terms) == {"bpr", "cl", "kl"} and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n for n, _ in net.named_parameters()} == {"user_emb", "item_emb"}   # features: graphs only
    net.prepare_eval()
    scores = net.full_scores(torch.tensor([0, 3, 11]))
    assert scores.shape == (3, data.n_items)
    users_e, items_e, views = net.embeddings()
    expected = users_e[[0, 3, 11]] @ (items_e + sum(views) / len(views)).T
    assert torch.allclose(scores, expected, atol=1e-5)


def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    """DA-MRS's logged loss is a BPR whose weights grow as the views agree more with the user,
    so it need not fall; what must fall is the plain BPR ranking loss on fixed training triples
    (init vs. trained weights) and the neighbour-discrimination term."""
    cfg = train_config(tmp_path, ["model=damrs", "trainer.max_epochs=3", "+trainer.limit_train_batches=8",
                                  "seed=1"])
    train(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    per_epoch = log.dropna(subset=["train/loss"]).sort_values("epoch")
    assert len(per_epoch) == 3 and np.isfinite(per_epoch[["train/loss_bpr", "train/loss_cl", "train/loss_kl"]]).all().all()
    assert per_epoch["train/loss_cl"].iloc[-1] < per_epoch["train/loss_cl"].iloc[0]

    dm = hydra.utils.instantiate(cfg.dataset)
    dm.setup("fit")
    torch.manual_seed(1)
    net = hydra.utils.instantiate(cfg.model.net)(data=dm.data, graphs=dm.graphs)
    g = torch.Generator().manual_seed(0)
    pick = torch.randint(0, len(dm.data.train), (4096,), generator=g)
    users, pos = torch.from_numpy(dm.data.train.users)[pick], torch.from_numpy(dm.data.train.items)[pick]
    neg = torch.randint(0, dm.data.n_items, (4096,), generator=g)

    def plain_bpr_and_auc() -> tuple[float, float]:
        with torch.no_grad():
            u, items = net.scoring_embeddings()
            x = (u[users] * (items[pos] - items[neg])).sum(1)
            return float(-F.logsigmoid(x).mean()), float((x > 0).float().mean())
    bpr_before, auc_before = plain_bpr_and_auc()
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    bpr_after, auc_after = plain_bpr_and_auc()
    assert bpr_after < bpr_before and auc_after > max(auc_before, 0.5) + 0.1

    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    seen = inter[inter.x_label < 2].groupby("userID").size()
    random_recall = float(np.mean(20 / (inter.itemID.nunique() - seen)))
    assert m["test"]["recall@20"] > 3 * random_recall
