"""SPUMR: operators against dense references, UPA closed forms, switches, paths, training."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from src.data.graphs import jaccard_topk
from src.models.spumr import SPUMR
from src.models.spumr.operators import csg_operator, msg_operator, profile_operator
from src.models.spumr.upa import TopKGate, kl_loss, uncertainty_loss
from tests.helpers import train_config

K = 3  # neighbours in the small graphs


# --------------------------------------------------------------------------- fixtures

def random_data(n_users=24, n_items=20, dims=(7, 5), seed=0) -> RecData:
    """Random interactions (user 0 has no training items, item 0 no training users) and features."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(1, n_users):
        chosen = rng.choice(np.arange(1, n_items), size=rng.integers(2, 8), replace=False)
        users += [u] * len(chosen)
        items += chosen.tolist()
    train = Interactions(np.array(users), np.array(items))
    other = Interactions(np.array([0, 1]), np.array([0, 0]))
    names = ["image", "text", "audio"][: len(dims)]
    feats = {m: rng.normal(size=(n_items, d)).astype(np.float32) for m, d in zip(names, dims)}
    return RecData("rand", n_users, n_items, train, other, other, feats, fingerprint="")


@pytest.fixture(scope="module")
def data():
    return random_data()


@pytest.fixture(scope="module")
def graphs(data):
    return GraphStore(data)


def make(data, graphs, seed=0, **kw) -> SPUMR:
    torch.manual_seed(seed)
    return SPUMR(data, graphs, embedding_dim=8, knn_k=K, **kw)


def batch(data, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(data.n_users, (n,), generator=g), torch.randint(data.n_items, (n,), generator=g),
            torch.randint(data.n_items, (n,), generator=g))


def dense_r(data) -> np.ndarray:
    r = np.zeros((data.n_users, data.n_items))
    r[data.train.users, data.train.items] = 1
    return r


# --------------------------------------------------------------------------- dense references

def ref_profile(r):
    """Eq. 1 written out: row u averages the items of I_u."""
    deg = r.sum(1, keepdims=True)
    return np.divide(r, deg, out=np.zeros_like(r), where=deg > 0)


def ref_msg(lists: np.ndarray, symmetric=False):
    """Eqs. 2-3: entry (u, v), v in N_u or u, is 1/(sqrt(|N_u|+1) sqrt(|N_v|+1))."""
    n = len(lists)
    nbrs = [set(row.tolist()) for row in lists]
    if symmetric:
        for u in range(n):
            for v in list(nbrs[u]):
                nbrs[v].add(u)
    a = np.zeros((n, n))
    for u in range(n):
        for v in nbrs[u] | {u}:
            a[u, v] = 1 / (math.sqrt(len(nbrs[u]) + 1) * math.sqrt(len(nbrs[v]) + 1))
    return a


def ref_jaccard_lists(r: np.ndarray, k: int):
    """Per row, the top-k other rows by Jaccard (> 0), ties to the lower index: {v: s_uv}."""
    sets = [set(np.flatnonzero(row)) for row in r]
    out = []
    for u, su in enumerate(sets):
        cand = [(len(su & sv) / len(su | sv), v) for v, sv in enumerate(sets) if v != u and su & sv]
        cand.sort(key=lambda t: (-t[0], t[1]))
        out.append({v: s for s, v in cand[:k]})
    return out


def ref_csg(lists, norm="self_row", alpha="sum"):
    """Eqs. 4a/4b/4c written out from the neighbour dictionaries."""
    n = len(lists)
    a = np.zeros((n, n))
    f = np.exp if alpha == "softmax" else (lambda x: x)
    for u, nb in enumerate(lists):
        weights = {v: f(s) for v, s in nb.items()}
        if norm == "self_row":
            weights[u] = f(1.0)  # s_uu = 1
        total = sum(weights.values())
        for v, w in weights.items():
            a[u, v] = w / total
        if norm == "residual":
            a[u, u] += 1.0
    return a


def readout(a, x, layers, how):
    hs = [x]
    for _ in range(layers):
        hs.append(a @ hs[-1])
    return hs[-1] if how == "last" else np.mean(hs, 0)


def dense(t):
    return t.to_dense().double().numpy()


# --------------------------------------------------------------------------- operators

def test_profile_operator_is_eq1(data):
    r = dense_r(data)
    p = dense(profile_operator(data.train_matrix(), torch.float64))
    assert np.allclose(p, ref_profile(r), atol=1e-15)
    assert np.allclose(p[1:].sum(1), 1) and not p[0].any()  # user 0 has no training items


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_msg_operator_matches_eq2_eq3(graphs, side, symmetric):
    lists = (graphs.user_knn if side == "user" else graphs.item_knn)("image", K)[0]
    a = dense(msg_operator(lists, symmetric, torch.float64))
    ref = ref_msg(lists.numpy(), symmetric)
    assert np.allclose(a, ref, atol=1e-15)
    if not symmetric:  # directed lists: |N| = k everywhere, a plain mean over {u} and N_u
        assert np.allclose(a[a > 0], 1 / (K + 1)) and np.allclose(a.sum(1), 1)


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("norm", ["self_row", "neighbours", "residual"])
@pytest.mark.parametrize("alpha", ["sum", "softmax"])
def test_csg_operator_matches_eq4_eq5(data, side, norm, alpha):
    r = dense_r(data) if side == "user" else dense_r(data).T
    jac = jaccard_topk(data.train_matrix().astype(np.float64) if side == "user"
                       else data.train_matrix().T.tocsr().astype(np.float64), K)
    a = dense(csg_operator(jac, norm, alpha))
    lists = ref_jaccard_lists(r, K)
    ref = ref_csg(lists, norm, alpha)
    assert np.allclose(a, ref, atol=1e-14)
    empty = [u for u, nb in enumerate(lists) if not nb]
    assert empty  # the cold user / item: no Jaccard neighbours
    if norm == "self_row":  # Eq. 4b: rows sum to 1, s_uu = 1 gives alpha_uu = 1 / (1 + sum_v s_uv)
        assert np.allclose(a.sum(1), 1)
        if alpha == "sum":
            assert np.allclose(np.diag(a), [1 / (1 + sum(nb.values())) for nb in lists])
        assert all(a[u, u] == 1 for u in empty)
    elif norm == "neighbours":
        assert not np.diag(a).any() and all(not a[u].any() for u in empty)
    else:
        assert np.allclose(np.diag(a), 1)


@pytest.mark.parametrize("how", ["last", "mean"])
def test_literal_chains_compose_eqs_1_to_5(data, graphs, how):
    """Encoder output = CSG^L MSG^L (D^-1 R) X for users and CSG^L MSG^L X for items."""
    model = make(data, graphs, path="literal", readout=how, n_layers=2, csg_layers=3).double()
    r = dense_r(data)
    jac_u = ref_csg(ref_jaccard_lists(r, K))
    jac_i = ref_csg(ref_jaccard_lists(r.T, K))
    hu, hi = model.encoder()
    for m in data.features:
        lin = model.encoder.proj[m]
        x = (torch.from_numpy(data.features[m]).double() @ lin.weight.T + lin.bias).detach().numpy()
        msg_u, msg_i = ref_msg(graphs.user_knn(m, K)[0].numpy()), ref_msg(graphs.item_knn(m, K)[0].numpy())
        ref_u = readout(jac_u, readout(msg_u, ref_profile(r) @ x, 2, how), 3, how)
        ref_i = readout(jac_i, readout(msg_i, x, 2, how), 3, how)
        # float32 Jaccard values in the model (GraphStore) against exact fractions here
        assert np.allclose(hu[m].detach().numpy(), ref_u, atol=1e-6)
        assert np.allclose(hi[m].detach().numpy(), ref_i, atol=1e-6)


# --------------------------------------------------------------------------- UPA closed forms

def test_kl_matches_closed_form_by_hand():
    # modality A, entity 1: mu = (1, 0), log sigma^2 = (0, ln 4)
    #   dim 1: 1/2 (1 + 1 - 0 - 1) = 0.5 ; dim 2: 1/2 (0 + 4 - ln 4 - 1) = 1.5 - ln 2 = 0.806853
    #   entity 1 = 1.306853 ; entity 2 (mu = 0, log sigma^2 = 0) = 0 ; mean = 0.653426
    # modality B, entity 1: mu = (2, 0), log sigma^2 = 0 -> 1/2 * 4 = 2 ; entity 2 = 0 ; mean = 1
    # L_KL = (0.653426 + 1) / 2 = 0.826713
    mu_a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    lv_a = torch.tensor([[0.0, math.log(4)], [0.0, 0.0]], dtype=torch.float64)
    mu_b = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    lv_b = torch.zeros(2, 2, dtype=torch.float64)
    expected = (0.5 * (1.306853 + 0.0) + 1.0) / 2
    assert kl_loss([mu_a, mu_b], [lv_a, lv_b]).item() == pytest.approx(expected, abs=1e-6)
    assert kl_loss([mu_a, mu_b], [lv_a, lv_b]).item() == pytest.approx(((1.5 - math.log(2) + 0.5) / 2 + 1) / 2, abs=1e-12)
    # and against torch.distributions on random values
    mu, lv = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    assert kl_loss([mu], [lv]).item() == pytest.approx(ref.item(), rel=1e-12)
    assert kl_loss([mu], [lv], "mean").item() == pytest.approx(ref.item() / 4, rel=1e-12)


def test_uncertainty_loss_matches_eq9_by_hand():
    # entity 1: gates (0.25, 0.75); sum_k sigma^2 = 1 + 2 = 3 (A), 3 + 3 = 6 (B) -> 0.75 + 4.5 = 5.25
    # entity 2: gates (1, 0); sum_k sigma^2 = 2 (A), 2 (B) -> 2 ; L_U = (5.25 + 2) / 2 = 3.625
    gates = torch.tensor([[0.25, 0.75], [1.0, 0.0]], dtype=torch.float64)
    lv_a = torch.tensor([[0.0, math.log(2)], [0.0, 0.0]], dtype=torch.float64)
    lv_b = torch.tensor([[math.log(3), math.log(3)], [0.0, 0.0]], dtype=torch.float64)
    assert uncertainty_loss(gates, [lv_a, lv_b]).item() == pytest.approx(3.625, abs=1e-12)
    assert uncertainty_loss(gates, [lv_a, lv_b], "mean").item() == pytest.approx(3.625 / 2, abs=1e-12)
    # sigma instead of sigma^2: entity 1: 0.25 (1 + sqrt 2) + 0.75 * 2 sqrt 3 ; entity 2: 2
    by_std = (0.25 * (1 + math.sqrt(2)) + 0.75 * 2 * math.sqrt(3) + 2) / 2
    assert uncertainty_loss(gates, [lv_a, lv_b], target="std").item() == pytest.approx(by_std, abs=1e-12)


@pytest.mark.parametrize("order", ["mask_then_softmax", "softmax_then_mask"])
@pytest.mark.parametrize("n_experts,top_k", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_gate_topk(order, n_experts, top_k):
    torch.manual_seed(0)
    gate = TopKGate(n_experts, 4, top_k, order).double()
    zs = [torch.randn(50, 4, dtype=torch.float64) for _ in range(n_experts)]
    g = gate(zs)
    assert g.shape == (50, n_experts) and (g >= 0).all()
    assert ((g > 0).sum(1) == top_k).all()  # exactly K non-zero weights per entity
    p = torch.softmax(gate.linear(torch.cat(zs, 1)), 1)
    chosen = p.topk(top_k, 1).indices
    assert (g.gather(1, chosen) > 0).all()  # the K largest logits are the kept ones
    if order == "mask_then_softmax" or top_k == n_experts:
        assert torch.allclose(g.sum(1), torch.ones(50, dtype=torch.float64))
    else:  # EUAR order: kept probabilities, not renormalised
        assert torch.allclose(g.sum(1), p.gather(1, chosen).sum(1)) and (g.sum(1) < 1).all()


@pytest.mark.parametrize("order", ["mask_then_softmax", "softmax_then_mask"])
def test_gate_gradient_with_k1(data, graphs, order):
    """SPUMR.md Eq. 8 remark: K = 1 under mask-then-softmax gives one-hot, untrainable weights."""
    model = make(data, graphs, gate_topk=1, gate_order=order)
    sum(model.loss_terms(*batch(data)).values()).backward()
    grad = model.user_gate.linear.weight.grad
    model.prepare_eval()
    stats = model.eval_stats()
    if order == "mask_then_softmax":
        assert grad is not None and torch.count_nonzero(grad) == 0
        assert stats["gate/image_user_mean"] + stats["gate/text_user_mean"] == pytest.approx(1)
    else:
        assert torch.count_nonzero(grad) > 0
        assert stats["gate/image_user_mean"] + stats["gate/text_user_mean"] < 1


# --------------------------------------------------------------------------- the model

def test_terms_shapes_and_finiteness(data, graphs):
    model = make(data, graphs)
    terms = model.loss_terms(*batch(data))
    assert set(terms) == {"bpr", "cl", "kl", "u"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    users = torch.tensor([0, 3, 5])
    assert model.full_scores(users).shape == (3, data.n_items)
    model.prepare_eval()
    assert model.full_scores(users).shape == (3, data.n_items) and torch.isfinite(model.full_scores(users)).all()


@pytest.mark.parametrize("kw", [{}, {"id_branch": "lightgcn"}, {"freeze_features": False},
                                {"separate_gates": True, "head": "mlp"}])
def test_gradients_reach_every_learnable_parameter(data, graphs, kw):
    model = make(data, graphs, **kw)
    sum(model.loss_terms(*batch(data, n=64)).values()).backward()
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("encoder.proj") for n in names) and "user_id" in names
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    features = [n for n in names if n.startswith("encoder.features")]
    assert bool(features) == (kw.get("freeze_features") is False)  # raw tables learn only if asked
    assert all(not b.requires_grad for b in model.buffers())


SWITCHES = [{}, {"readout": "mean"}, {"id_branch": "none"}, {"id_branch": "lightgcn"},
            {"use_msg": False}, {"use_csg": False}, {"use_upa": False}, {"csg_norm": "residual"},
            {"csg_norm": "neighbours", "knn_symmetric": True},
            {"gate_topk": 1, "gate_order": "softmax_then_mask", "cl_mode": "symmetric"}]


@pytest.mark.parametrize("kw", SWITCHES, ids=[",".join(f"{k}={v}" for k, v in s.items()) or "defaults"
                                              for s in SWITCHES])
def test_fast_path_equals_literal_path(data, graphs, kw):
    fast = make(data, graphs, path="fast", **kw).double()
    fast.encoder.precompute()  # the tables again, now in float64
    literal = make(data, graphs, path="literal", **kw)
    literal.load_state_dict(fast.state_dict())
    literal.double()
    assert fast.path == "fast" and literal.path == "literal"
    for a, b in zip(fast.encoder(), literal.encoder()):
        for m in data.features:
            assert torch.allclose(a[m], b[m], rtol=1e-12, atol=1e-12)
    users, pos, neg = batch(data, n=32)
    terms = {}
    for name, model in (("fast", fast), ("literal", literal)):
        torch.manual_seed(7)  # same eps
        terms[name] = model.loss_terms(users, pos, neg)
        sum(terms[name].values()).backward()
    assert terms["fast"].keys() == terms["literal"].keys()
    for key in terms["fast"]:
        assert torch.allclose(terms["fast"][key], terms["literal"][key], rtol=1e-10, atol=1e-14), key
    grads = dict(literal.named_parameters())
    for name, p in fast.named_parameters():
        assert torch.allclose(p.grad, grads[name].grad, rtol=1e-9, atol=1e-12), name
    fast.prepare_eval()
    literal.prepare_eval()
    every = torch.arange(data.n_users)
    assert torch.allclose(fast.full_scores(every), literal.full_scores(every), rtol=1e-10, atol=1e-12)
    for key, value in fast.eval_stats().items():
        assert value == pytest.approx(literal.eval_stats()[key], rel=1e-6, abs=1e-9, nan_ok=True), key


def test_path_selection(data, graphs):
    assert make(data, graphs).path == "fast"
    assert make(data, graphs, freeze_features=False).path == "literal"
    with pytest.raises(ValueError, match="freeze_features"):
        make(data, graphs, freeze_features=False, path="fast")
    with pytest.raises(ValueError, match="id_branch"):
        make(data, graphs, id_branch="bert")


def _modal(model):
    with torch.no_grad():
        return model.encoder()


def test_use_csg_false_is_identity_csg_and_keeps_msg(data, graphs):
    full, no_csg = make(data, graphs, path="literal").double(), make(data, graphs, path="literal", use_csg=False).double()
    hu, hi = _modal(no_csg)
    for m in data.features:
        assert len(no_csg.encoder.user_ops[m].steps) == 2 and len(no_csg.encoder.item_ops[m].steps) == 1
        x = full.encoder.proj[m](full.encoder.raw(m))
        with torch.no_grad():  # the full model's chains minus their last (CSG) step
            ref_u = x
            for step in list(full.encoder.user_ops[m].steps)[:-1]:
                ref_u = step(ref_u)
            ref_i = list(full.encoder.item_ops[m].steps)[0](x)
        assert torch.allclose(hu[m], ref_u) and torch.allclose(hi[m], ref_i)
    assert _same_params(full, no_csg)


def test_use_msg_false_is_identity_msg_and_keeps_csg(data, graphs):
    full, no_msg = make(data, graphs, path="literal").double(), make(data, graphs, path="literal", use_msg=False).double()
    hu, hi = _modal(no_msg)
    for m in data.features:
        steps_u, steps_i = list(full.encoder.user_ops[m].steps), list(full.encoder.item_ops[m].steps)
        x = full.encoder.proj[m](full.encoder.raw(m))
        with torch.no_grad():
            assert torch.allclose(hu[m], steps_u[2](steps_u[0](x)))  # CSG(profile), no MSG
            assert torch.allclose(hi[m], steps_i[1](x))
    assert _same_params(full, no_msg)


def _same_params(a, b) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def test_use_upa_false_is_deterministic_mean_fusion(data, graphs):
    model = make(data, graphs, use_upa=False)
    assert not hasattr(model, "heads") and not hasattr(model, "user_gate")
    b = batch(data)
    torch.manual_seed(1)
    t1 = model.loss_terms(*b)
    torch.manual_seed(2)
    t2 = model.loss_terms(*b)
    assert set(t1) == {"bpr", "cl"} and all(torch.equal(t1[k], t2[k]) for k in t1)  # no sampling
    hu, hi = _modal(model)
    users = torch.arange(data.n_users)
    with torch.no_grad():
        ref = ((hu["image"] + hu["text"]) / 2 + model.user_id) @ ((hi["image"] + hi["text"]) / 2 + model.item_id).T
    assert torch.allclose(model.full_scores(users), ref, atol=1e-6)
    model.prepare_eval()
    assert model.eval_stats() == {} and model.eval_histograms() == {}


def test_training_samples_and_evaluation_uses_mu(data, graphs):
    model = make(data, graphs)
    b = batch(data)
    torch.manual_seed(1)
    t1 = model.loss_terms(*b)
    torch.manual_seed(2)
    t2 = model.loss_terms(*b)
    torch.manual_seed(1)
    t3 = model.loss_terms(*b)
    assert not torch.equal(t1["bpr"], t2["bpr"]) and all(torch.equal(t1[k], t3[k]) for k in t1)
    users = torch.arange(data.n_users)
    s1 = model.full_scores(users)
    torch.manual_seed(5)
    assert torch.equal(s1, model.full_scores(users))
    hu, hi = _modal(model)
    with torch.no_grad():  # mu-based, gated: recompute by hand
        def fused(h, ids):
            mus = [model.heads.mu[m](h[m]) for m in ("image", "text")]
            g = torch.softmax(model.user_gate.linear(torch.cat(mus, 1)), 1)
            return g[:, :1] * mus[0] + g[:, 1:] * mus[1] + ids
        ref = fused(hu, model.user_id) @ fused(hi, model.item_id).T
    assert torch.allclose(s1, ref, atol=1e-5)


def test_eval_stats_and_histograms(data, graphs):
    model = make(data, graphs)
    model.prepare_eval()
    stats, hists = model.eval_stats(), model.eval_histograms()
    for m in ("image", "text"):
        for side in ("user", "item"):
            for key in (f"gate/{m}_{side}_mean", f"sigma/{m}_{side}_mean", f"corr/{m}_{side}"):
                assert key in stats
            assert -1 <= stats[f"corr/{m}_{side}"] <= 1 and stats[f"sigma/{m}_{side}_mean"] > 0
            n = data.n_users if side == "user" else data.n_items
            assert hists[f"gate/{m}_{side}"].shape == (n,) and hists[f"sigma/{m}_{side}"].shape == (n,)
            g, s = hists[f"gate/{m}_{side}"], hists[f"sigma/{m}_{side}"]
            assert stats[f"corr/{m}_{side}"] == pytest.approx(float(np.corrcoef(g, s)[0, 1]), abs=1e-6)
        both = torch.cat([hists[f"gate/{m}_user"], hists[f"gate/{m}_item"]]).mean()
        assert stats[f"gate/{m}_mean"] == pytest.approx(float(both), abs=1e-6)
    assert stats["gate/image_user_mean"] + stats["gate/text_user_mean"] == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize("dims", [(6,), (6, 4, 3)])
def test_any_number_of_modalities(dims):
    d = random_data(dims=dims)
    model = make(d, GraphStore(d))
    terms = model.loss_terms(*batch(d))
    assert all(torch.isfinite(t) for t in terms.values())
    model.prepare_eval()
    assert len([k for k in model.eval_stats() if k.endswith("_mean") and k.startswith("gate/")
                and "_user" not in k and "_item" not in k]) == len(dims)


# --------------------------------------------------------------------------- configs and training

def test_configs_compose(tmp_path, ml100k_dir):
    import hydra
    cfg = train_config(tmp_path, ["model=spumr", "lambda_kl=5e-3", "lambda_u=1e-4"])
    assert cfg.model.net.lambda_kl == 5e-3 and cfg.model.net.lambda_u == 1e-4
    dm = hydra.utils.instantiate(cfg.dataset)
    dm.setup("fit")
    module = hydra.utils.instantiate(cfg.model, _partial_=True)(data=dm.data, graphs=dm.graphs)
    assert isinstance(module.net, SPUMR) and module.net.path == "fast"
    base = train_config(tmp_path, ["model=spumr"]).model.net
    for switch in ("msg", "csg", "upa"):
        ab = train_config(tmp_path, [f"experiment=spumr_wo_{switch}"]).model.net
        diff = {k for k in base if base[k] != ab[k]}
        assert diff == {f"use_{switch}"} and ab[f"use_{switch}"] is False


def test_short_training_on_ml100k(tmp_path, ml100k_dir):
    from src.train import train
    cfg = train_config(tmp_path, ["model=spumr", "trainer.max_epochs=3", "seed=1"])
    train(cfg)
    m = json.loads((tmp_path / "metrics.json").read_text())
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    per_epoch = log.groupby("epoch")["train/loss"].mean().dropna()
    assert per_epoch.iloc[-1] < per_epoch.iloc[0]
    assert {"train/loss_bpr", "train/loss_cl", "train/loss_kl", "train/loss_u", "gate/text_mean",
            "sigma/kg_user_mean", "corr/text_item"} <= set(log.columns)
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    seen = inter[inter.x_label < 2].groupby("userID").size()
    random_recall = float(np.mean(20 / (inter.itemID.nunique() - seen)))
    assert m["test"]["recall@20"] > 5 * random_recall
    assert {"gate/text_mean", "sigma/kg_mean", "corr/kg_user"} <= set(m["uncertainty"])
