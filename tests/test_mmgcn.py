"""MMGCN: graph, layers and loss against dense loop-by-loop references; gradients; ml100k run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.models.mmgcn import MMGCN, bipartite_adjacency
from tests.model_checks import dense_train, random_recall_at_20, short_run, tiny_data, tiny_store

SLOPE = 0.01  # F.leaky_relu's default negative slope


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, SLOPE * x)


def neighbours(r: np.ndarray) -> list[list[int]]:
    """Neighbour lists of the bipartite graph, users first: user u <-> item node n_users + i."""
    n_u, n_i = r.shape
    return ([[n_u + i for i in range(n_i) if r[u, i]] for u in range(n_u)]
            + [[u for u in range(n_u) if r[u, i]] for i in range(n_i)])


def make(data, **kw) -> MMGCN:
    kw.setdefault("latent_dims", {"image": 5})
    return MMGCN(data, tiny_store(data), embedding_dim=3, **kw).double()


def numpy_params(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}


def reference_input(data, p: dict[str, np.ndarray], modality: str, projected: bool) -> np.ndarray:
    items = data.features[modality].astype(np.float64)
    if projected:
        items = items @ p["project.weight"].T + p["project.bias"]
    x = np.concatenate([p["preference"], items])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_layer(x: np.ndarray, nbrs: list[list[int]], p: dict[str, np.ndarray], layer: int,
                    id_emb: np.ndarray, aggr: str, concat: bool, has_id: bool) -> np.ndarray:
    """One MMGCN layer node by node (Eqs. 1 and 5 and the combination)."""
    w = p[f"conv_weights.{layer}"]
    lw, lb = p[f"linears.{layer}.weight"], p[f"linears.{layer}.bias"]
    gw, gb = p[f"combiners.{layer}.weight"], p[f"combiners.{layer}.bias"]
    out = []
    for node, nb in enumerate(nbrs):
        messages = [x[j] @ w for j in nb]
        agg = np.zeros(w.shape[1]) if not nb else (np.mean(messages, 0) if aggr == "mean" else np.sum(messages, 0))
        h = lrelu(agg)
        x_hat = lrelu(lw @ x[node] + lb) + (id_emb[node] if has_id else 0)
        out.append(lrelu(gw @ np.concatenate([h, x_hat]) + gb) if concat else lrelu(gw @ h + gb + x_hat))
    return np.array(out)


@pytest.mark.parametrize("aggr", ["mean", "add"])
def test_adjacency_is_the_bipartite_graph_with_mean_or_sum_rows(aggr):
    data = tiny_data()
    r = dense_train(data)
    a = bipartite_adjacency(data.train_matrix(), aggr).to_dense().double().numpy()
    n = data.n_users + data.n_items
    expected = np.zeros((n, n))
    for node, nb in enumerate(neighbours(r)):
        for j in nb:
            expected[node, j] = 1 / len(nb) if aggr == "mean" else 1
    np.testing.assert_allclose(a, expected, rtol=1e-6)
    assert not a[data.n_users + 6].any()  # item 6 has no training pair: no messages
    with pytest.raises(ValueError, match="aggr"):
        bipartite_adjacency(data.train_matrix(), "max")


@pytest.mark.parametrize("aggr,concat,has_id", [("mean", True, True), ("add", False, True), ("mean", True, False)])
def test_branch_layers_match_a_dense_reference(aggr, concat, has_id):
    data = tiny_data()
    model = make(data, aggr=aggr, concat=concat, has_id=has_id, n_layers=2)
    nbrs, id_emb = neighbours(dense_train(data)), model.id_embedding.numpy()
    tol = dict(rtol=1e-6, atol=1e-9)  # the adjacency stores 1/degree in float32
    for modality, projected in (("image", True), ("text", False)):
        branch = model.branches[modality]
        p = numpy_params(branch)
        x0 = reference_input(data, p, modality, projected)
        np.testing.assert_allclose(branch.input_layer().detach().numpy(), x0, rtol=1e-10, atol=1e-12)
        x1 = reference_layer(x0, nbrs, p, 0, id_emb, aggr, concat, has_id)
        got = branch.layer(0, torch.from_numpy(x0), model.adj, model.id_embedding)
        np.testing.assert_allclose(got.detach().numpy(), x1, **tol)
        x2 = reference_layer(x1, nbrs, p, 1, id_emb, aggr, concat, has_id)
        np.testing.assert_allclose(branch(model.adj, model.id_embedding).detach().numpy(), x2, **tol)


def test_scores_average_the_modalities():
    data = tiny_data({"image": 6, "text": 4, "audio": 2})
    model = make(data, n_layers=1)
    outs = [b(model.adj, model.id_embedding).detach().numpy() for b in model.branches.values()]
    rep = np.mean(outs, axis=0)
    users = torch.tensor([4, 0])
    scores = model.full_scores(users).detach().numpy()
    assert scores.shape == (2, data.n_items)
    np.testing.assert_allclose(scores, rep[[4, 0]] @ rep[data.n_users:].T, rtol=1e-10)
    model.prepare_eval()
    np.testing.assert_allclose(model.full_scores(users).detach().numpy(), scores, rtol=1e-12)
    model.end_eval()


def test_shapes_follow_latent_dims_and_n_layers():
    data = tiny_data()
    model = MMGCN(data, tiny_store(data), embedding_dim=8, n_layers=4, latent_dims={"image": 7})
    image, text = model.branches["image"], model.branches["text"]
    assert image.preference.shape == (data.n_users, 7) and image.conv_weights[0].shape == (7, 7)
    assert text.project is None and text.preference.shape == (data.n_users, 4)
    assert len(text.conv_weights) == 4 and text.combiners[0].in_features == 4 + 8  # concat
    assert model.id_embedding.shape == (data.n_users + data.n_items, 8)


def test_loss_is_mmrec_bpr_plus_reg():
    data = tiny_data()
    model = make(data, reg_weight=0.7)
    users, pos, neg = torch.tensor([0, 2, 2, 4]), torch.tensor([0, 1, 3, 2]), torch.tensor([6, 5, 4, 6])
    terms = model.loss_terms(users, pos, neg)
    # MMRec's construction: each user twice, its positive and negative interleaved
    out = model.representation()
    user_t = users.repeat_interleave(2)
    item_t = torch.stack((pos, neg)).t().reshape(-1) + data.n_users
    score = (out[user_t] * out[item_t]).sum(1).view(-1, 2)
    bpr = -torch.log(torch.sigmoid(score @ torch.tensor([[1.0], [-1.0]], dtype=torch.float64))).mean()
    e = model.id_embedding
    reg = (e[user_t] ** 2 + e[item_t] ** 2).mean() + sum((b.preference ** 2).mean() for b in model.branches.values())
    assert terms["bpr"].item() == pytest.approx(bpr.item(), rel=1e-10)
    assert terms["reg"].item() == pytest.approx(0.7 * reg.item(), rel=1e-10)


def test_gradients_frozen_free_embeddings_and_checkpoints():
    data = tiny_data()
    batch = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([6, 5, 4, 6])
    model = make(data, reg_weight=1e-2)
    sum(model.loss_terms(*batch).values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    frozen = {"id_embedding", "branches.image.preference", "branches.text.preference"}
    assert not frozen & {n for n, _ in model.named_parameters()}
    state = model.state_dict()
    assert frozen <= set(state) and not any("features" in k for k in state)  # raw input not saved
    torch.manual_seed(123)  # a fresh model restored from the checkpoint scores identically
    other = make(data, reg_weight=1e-2)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.full_scores(torch.arange(5)).detach().numpy(),
                                  model.full_scores(torch.arange(5)).detach().numpy())

    learned = make(data, reg_weight=1e-2, learn_free_embeddings=True)
    sum(learned.loss_terms(*batch).values()).backward()
    grads = dict(learned.named_parameters())
    for name in frozen:
        assert grads[name].grad is not None and grads[name].grad.abs().sum() > 0, name


def test_refuses_a_dataset_without_features():
    data = tiny_data({})
    with pytest.raises(ValueError, match="needs modal features"):
        MMGCN(data, tiny_store(data))


def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    metrics, losses = short_run(tmp_path, ["model=mmgcn", "trainer.max_epochs=3",
                                           "+trainer.limit_train_batches=8",
                                           "trainer.log_every_n_steps=1", "seed=1"])
    assert np.isfinite(losses.to_numpy()).all()
    assert losses["train/loss"].iloc[-1] < losses["train/loss"].iloc[0]
    assert metrics["test"]["recall@20"] > 3 * random_recall_at_20(ml100k_dir)
