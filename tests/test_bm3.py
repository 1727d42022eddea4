"""BM3: the loss on hand-made cases, dropout views, eval scores, gradients, a short ml100k run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from src.models.bm3 import BM3, dropped_rows
from tests.model_checks import random_recall_at_20, short_run


def make_data(pairs: list[tuple[int, int]], n_users: int, n_items: int,
              features: dict[str, np.ndarray]) -> RecData:
    users, items = (np.array(col, dtype=np.int64) for col in zip(*pairs))
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return RecData(name="toy", n_users=n_users, n_items=n_items, train=Interactions(users, items),
                   valid=empty, test=empty, features=features, fingerprint="toy")


def toy_data(n_users: int = 9, n_items: int = 11, seed: int = 0) -> RecData:
    rng = np.random.default_rng(seed)
    pairs = {(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < 0.35}
    pairs |= {(u, u % n_items) for u in range(n_users)} | {(i % n_users, i) for i in range(n_items)}
    return make_data(sorted(pairs), n_users, n_items,
                     {"image": rng.standard_normal((n_items, 6)).astype(np.float32),
                      "text": rng.standard_normal((n_items, 5)).astype(np.float32)})


def set_identity(layer: torch.nn.Linear) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.eye(*layer.weight.shape))
        layer.bias.zero_()


def test_loss_on_a_hand_made_case():
    """One user, one item, no propagation, no dropout: every term by hand.

    u = (1, 0), e = (0, 1): the item representation is ī + e = 2e = (0, 2) (no layers, so ī = e).
    Predictor = identity, projection = identity on x = (3, 4).
      rec   = [1 - cos(u, (0,2))] + [1 - cos((0,2), u)] = 1 + 1 = 2
      reg   = 0.5 * (‖u‖ + ‖(0,2)‖) / n_items = 0.5 * (1 + 2) / 1 = 1.5
      align = 2.0 * [1 - cos((3,4), (0,2))] = 2.0 * (1 - 4/5) = 0.4
      mask  = 2.0 * [1 - cos((3,4), (3,4))] = 0
    """
    data = make_data([(0, 0)], 1, 1, {"m": np.array([[3.0, 4.0]], dtype=np.float32)})
    model = BM3(data, GraphStore(data), embedding_dim=2, n_layers=0, dropout=0.0, reg_weight=0.5,
                cl_weight=2.0)
    with torch.no_grad():
        model.user_emb.copy_(torch.tensor([[1.0, 0.0]]))
        model.item_emb.copy_(torch.tensor([[0.0, 1.0]]))
    set_identity(model.predictor)
    set_identity(model.proj["m"])
    terms = model.loss_terms(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(
        {"rec": 2.0, "reg": 1.5, "align_m": 0.4, "mask_m": 0.0}, abs=1e-6)
    # eval scores: p(u) · p(i) = (1, 0) · (0, 2) = 0
    assert model.full_scores(torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-7)


def test_loss_matches_a_dense_reference_without_dropout():
    """Two layers, two modalities, repeated ids; every formula written out densely."""
    data = toy_data()
    graphs = GraphStore(data)
    torch.manual_seed(0)
    model = BM3(data, graphs, embedding_dim=8, n_layers=2, dropout=0.0, reg_weight=0.1, cl_weight=2.0)
    a = graphs.user_item_adjacency().to_dense().double()
    ego = torch.cat([model.user_emb, model.item_emb]).detach().double()
    mean = (ego + a @ ego + a @ a @ ego) / 3
    u_all, i_all = mean[: data.n_users], mean[data.n_users:] + model.item_emb.detach().double()
    w, b = model.predictor.weight.detach().double(), model.predictor.bias.detach().double()
    pred = lambda x: x @ w.T + b                                        # noqa: E731

    def gap(x, y):
        cos = (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1))
        return 1 - cos.mean().item()

    users, pos = torch.tensor([0, 2, 2, 5, 8]), torch.tensor([0, 3, 3, 1, 10])
    terms = model.loss_terms(users, pos, torch.zeros_like(pos))
    expected = {"rec": gap(pred(u_all[users]), i_all[pos]) + gap(pred(i_all[pos]), u_all[users]),
                "reg": 0.1 * (u_all.norm().item() + i_all.norm().item()) / data.n_items}
    for m in ("image", "text"):
        pw, pb = model.proj[m].weight.detach().double(), model.proj[m].bias.detach().double()
        f = torch.from_numpy(data.features[m]).double()[pos] @ pw.T + pb
        expected[f"align_{m}"] = 2.0 * gap(pred(f), i_all[pos])
        expected[f"mask_{m}"] = 2.0 * gap(pred(f), f)
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(expected, rel=1e-5)
    scores = model.full_scores(torch.arange(data.n_users)).detach().double()
    np.testing.assert_allclose(scores.numpy(), (pred(u_all) @ pred(i_all).T).numpy(), rtol=1e-5, atol=1e-6)


def test_dropout_view_shares_masks_between_repeated_ids():
    torch.manual_seed(0)
    table = torch.randn(5, 400) + 3.0
    ids = torch.tensor([4, 1, 4, 4, 2])
    out = dropped_rows(table, ids, 0.3)
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[3])
    kept = out != 0
    np.testing.assert_allclose(out[kept].numpy(), (table[ids][kept] / 0.7).numpy(), rtol=1e-6)
    assert 0.2 < 1 - kept.float().mean().item() < 0.4


def test_negatives_are_ignored_and_dropout_is_seeded():
    data = toy_data()
    model = BM3(data, GraphStore(data), embedding_dim=8, dropout=0.5)
    users, pos = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3])

    def run(neg, seed):
        torch.manual_seed(seed)
        return {k: v.item() for k, v in model.loss_terms(users, pos, neg).items()}

    a = run(torch.tensor([4, 5, 6, 7]), seed=1)
    assert a == run(torch.tensor([9, 9, 9, 9]), seed=1)       # same draws, other negatives
    assert a != run(torch.tensor([4, 5, 6, 7]), seed=2)       # other dropout masks


@pytest.mark.parametrize("finetune", [True, False])
def test_gradients_reach_every_trainable_parameter(finetune):
    data = toy_data()
    model = BM3(data, GraphStore(data), embedding_dim=8, dropout=0.3, finetune_features=finetune)
    users, pos = torch.tensor([0, 1, 2, 3, 5]), torch.tensor([0, 1, 2, 3, 7])
    sum(model.loss_terms(users, pos, pos).values()).backward()
    for name, p in model.named_parameters():
        if name.startswith("features."):
            assert p.requires_grad is finetune
            if not finetune:
                assert p.grad is None, name
                continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_targets_carry_no_gradient():
    """Only the online (predictor) side is trained by the cosine terms: with the predictor
    frozen at zero weight and bias, no cosine term can reach the encoder through the targets."""
    data = toy_data()
    model = BM3(data, GraphStore(data), embedding_dim=8, dropout=0.0, reg_weight=0.0)
    with torch.no_grad():
        model.predictor.weight.zero_()
        model.predictor.bias.fill_(1.0)       # constant online outputs: cosines defined
    sum(model.loss_terms(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1])).values()).backward()
    assert float(model.user_emb.grad.abs().max()) == 0.0 and float(model.item_emb.grad.abs().max()) == 0.0


def test_short_ml100k_run_learns(tmp_path, ml100k_dir):
    metrics, losses = short_run(tmp_path, ["model=bm3", "trainer.max_epochs=3", "seed=1"])
    loss = losses["train/loss"].to_numpy()
    assert np.isfinite(losses.to_numpy()).all() and len(loss) == 3 and loss[-1] < loss[0]
    assert {"train/loss_rec", "train/loss_reg", "train/loss_align_text", "train/loss_mask_kg"} <= set(losses.columns)
    assert metrics["test"]["recall@20"] > 3 * random_recall_at_20(ml100k_dir)
