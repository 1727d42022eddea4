"""VBPR: the score and loss against hand-written formulas, gradients, modalities, ml100k run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from src.models.base import bpr_loss, l2_reg
from src.models.vbpr import VBPR
from tests.model_checks import random_recall_at_20, short_run, tiny_data


def hand_set(model: VBPR, seed: int = 3) -> dict[str, np.ndarray]:
    """Overwrite every parameter with known random values; return them as float64 arrays."""
    rng = np.random.default_rng(seed)
    values = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            v = rng.standard_normal(tuple(p.shape))
            p.copy_(torch.from_numpy(v))
            values[name] = v
    return values


def explicit_score(v: dict[str, np.ndarray], feats: np.ndarray, u: int, i: int, d: int) -> float:
    """ŷ_ui = γ_uᵀγ_i + θ_uᵀ(E f_i + b), summed term by term."""
    gamma_u, theta_u = v["user_emb"][u, :d], v["user_emb"][u, d:]
    score = sum(gamma_u[k] * v["item_id_emb"][i, k] for k in range(d))
    for k in range(d):
        proj = v["content_proj.bias"][k] + sum(v["content_proj.weight"][k, j] * feats[i, j]
                                               for j in range(feats.shape[1]))
        score += theta_u[k] * proj
    return score


def test_scores_follow_the_vbpr_formula():
    data = tiny_data({"image": 6, "text": 4})
    model = VBPR(data, embedding_dim=3).double()
    v = hand_set(model)
    feats = np.concatenate([data.features["image"], data.features["text"]], axis=1).astype(np.float64)
    users = torch.tensor([0, 3, 4])
    scores = model.full_scores(users)
    assert scores.shape == (3, data.n_items)
    expected = [[explicit_score(v, feats, u, i, 3) for i in range(data.n_items)] for u in users.tolist()]
    np.testing.assert_allclose(scores.detach().numpy(), expected, rtol=1e-10)
    model.prepare_eval()  # the cached item vectors give the same scores
    np.testing.assert_allclose(model.full_scores(users).detach().numpy(), expected, rtol=1e-10)
    model.end_eval()


def test_loss_terms_are_bpr_plus_weighted_emb_loss():
    data = tiny_data()
    model = VBPR(data, embedding_dim=3, reg_weight=0.3).double()
    v = hand_set(model, seed=5)
    feats = np.concatenate([data.features["image"], data.features["text"]], axis=1).astype(np.float64)
    users, pos, neg = [0, 1, 4, 4], [0, 2, 5, 1], [3, 6, 0, 2]
    terms = model.loss_terms(torch.tensor(users), torch.tensor(pos), torch.tensor(neg))
    assert set(terms) == {"bpr", "reg"}
    gaps = [explicit_score(v, feats, u, p, 3) - explicit_score(v, feats, u, n, 3) for u, p, n in zip(users, pos, neg)]
    bpr = np.mean([-math.log(1 / (1 + math.exp(-g))) for g in gaps])
    item_vec = lambda i: np.concatenate([v["item_id_emb"][i], v["content_proj.weight"] @ feats[i]  # noqa: E731
                                         + v["content_proj.bias"]])
    norm = lambda rows: math.sqrt(sum(float(r @ r) for r in rows))  # noqa: E731  Frobenius norm
    emb = (norm([v["user_emb"][u] for u in users]) + norm([item_vec(i) for i in pos])
           + norm([item_vec(i) for i in neg])) / len(users)
    assert terms["bpr"].item() == pytest.approx(bpr, rel=1e-10)
    assert terms["reg"].item() == pytest.approx(0.3 * emb, rel=1e-10)
    assert "reg" not in VBPR(data, reg_weight=0.0).loss_terms(torch.tensor(users), torch.tensor(pos),
                                                              torch.tensor(neg))


def test_batch_projection_equals_projecting_every_item():
    # loss_terms projects only the batch's distinct items; the whole-catalogue projection (MMRec's
    # route) must give the same loss and the same gradient for every parameter
    data = tiny_data()
    model = VBPR(data, embedding_dim=4, reg_weight=0.1).double()
    users, pos, neg = torch.tensor([0, 1, 4, 4, 2]), torch.tensor([0, 2, 5, 1, 2]), torch.tensor([3, 6, 0, 2, 6])
    loss = sum(model.loss_terms(users, pos, neg).values())
    fast = torch.autograd.grad(loss, list(model.parameters()))
    items = model.item_vectors()
    u, p, n = model.user_emb[users], items[pos], items[neg]
    ref_loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + 0.1 * l2_reg(u, p, n)
    ref = torch.autograd.grad(ref_loss, list(model.parameters()))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_every_parameter_learns_and_features_stay_frozen():
    data = tiny_data()
    model = VBPR(data, embedding_dim=4, reg_weight=1e-2)
    terms = model.loss_terms(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 2, 3, 4]), torch.tensor([6, 5, 6, 5, 6]))
    sum(terms.values()).backward()
    names = {n for n, _ in model.named_parameters()}
    assert names == {"user_emb", "item_id_emb", "content_proj.weight", "content_proj.bias"}
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not model.item_features.requires_grad
    assert "item_features" not in model.state_dict()  # raw input, not a checkpointed weight


def test_init_and_shapes_match_mmrec():
    data = tiny_data({"a": 5, "b": 2, "c": 3})  # any number of modalities, concatenated in order
    model = VBPR(data, embedding_dim=8)
    assert model.user_emb.shape == (data.n_users, 16) and model.item_id_emb.shape == (data.n_items, 8)
    assert model.content_proj.in_features == 10 and torch.all(model.content_proj.bias == 0)
    np.testing.assert_array_equal(model.item_features.numpy(),
                                  np.concatenate([data.features[m] for m in "abc"], axis=1))
    assert model.item_vectors().shape == (data.n_items, 16)


def test_refuses_a_dataset_without_features():
    data = tiny_data({})
    with pytest.raises(ValueError, match="needs modal features"):
        VBPR(data)


def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    metrics, losses = short_run(tmp_path, ["model=vbpr", "trainer.max_epochs=3", "seed=1"])
    assert np.isfinite(losses.to_numpy()).all()
    assert losses["train/loss"].iloc[-1] < losses["train/loss"].iloc[0]
    assert metrics["test"]["recall@20"] > 3 * random_recall_at_20(ml100k_dir)
