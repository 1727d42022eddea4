"""GraphStore: graphs come from the training split only, once, through the cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data import graph_store
from src.data.cache import GraphCache
from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from tests.graph_refs import ref_cosine, ref_jaccard, ref_topk

N_USERS, N_ITEMS = 12, 9


def toy_data(fingerprint: str = "toy-fp") -> RecData:
    rng = np.random.default_rng(0)
    pairs = {(u, i) for u in range(N_USERS) for i in range(N_ITEMS) if rng.random() < 0.3}
    pairs |= {(u, u % N_ITEMS) for u in range(N_USERS)}           # every user has a train item
    pairs -= {(0, 7), (0, 8), (1, 7), (1, 8), (2, 8)}
    train = sorted(pairs)
    valid = [(0, 7), (1, 7)]                                       # held out: must add no edge
    test = [(0, 8), (1, 8), (2, 8)]
    as_split = lambda ps: Interactions(np.array([p[0] for p in ps], dtype=np.int64),  # noqa: E731
                                       np.array([p[1] for p in ps], dtype=np.int64))
    return RecData(name="toy", n_users=N_USERS, n_items=N_ITEMS, train=as_split(train),
                   valid=as_split(valid), test=as_split(test),
                   features={"image": rng.standard_normal((N_ITEMS, 6)).astype(np.float32),
                             "text": rng.standard_normal((N_ITEMS, 4)).astype(np.float32)},
                   fingerprint=fingerprint)


def train_dense(data: RecData) -> np.ndarray:
    r = np.zeros((data.n_users, data.n_items))
    r[data.train.users, data.train.items] = 1
    return r


def test_train_matrix_and_adjacency_use_training_pairs_only():
    data = toy_data()
    store = GraphStore(data)
    r = train_dense(data)
    m = store.train_matrix()
    assert m.is_sparse and m.dtype == torch.float32
    np.testing.assert_array_equal(m.to_dense().numpy(), r)
    adj = store.user_item_adjacency().to_dense().numpy()
    for split in (data.valid, data.test):
        for u, i in zip(split.users, split.items):
            assert r[u, i] == 0 and adj[u, N_USERS + i] == 0 and adj[N_USERS + i, u] == 0
    np.testing.assert_array_equal(adj[:N_USERS, N_USERS:] != 0, r == 1)


def test_jaccard_graphs_use_training_pairs_only():
    data = toy_data()
    store = GraphStore(data)
    r = train_dense(data)
    items = store.item_jaccard(3).to_dense().numpy()
    users = store.user_jaccard(3).to_dense().numpy()
    np.testing.assert_allclose(items, ref_jaccard(r.T, 3), atol=1e-6)
    np.testing.assert_allclose(users, ref_jaccard(r, 3), atol=1e-6)
    # the held-out pairs would change both graphs, so the comparisons above are not vacuous
    everything = r.copy()
    for split in (data.valid, data.test):
        everything[split.users, split.items] = 1
    assert not np.allclose(ref_jaccard(everything.T, 3), items, atol=1e-6)
    assert not np.allclose(ref_jaccard(everything, 3), users, atol=1e-6)


def test_user_profiles_and_knn_use_training_items_only():
    data = toy_data()
    store = GraphStore(data)
    r = train_dense(data)
    x = data.features["image"].astype(np.float64)
    profiles = (r @ x) / r.sum(1, keepdims=True)
    np.testing.assert_allclose(store.user_profiles("image").numpy(), profiles, rtol=1e-5, atol=1e-6)
    idx, val = store.user_knn("image", 3)
    ref_i, ref_v = ref_topk(ref_cosine(profiles), 3)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(val.numpy(), ref_v, atol=1e-5)
    idx, val = store.item_knn("text", 4)
    ref_i, ref_v = ref_topk(ref_cosine(data.features["text"].astype(np.float64)), 4)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    np.testing.assert_allclose(val.numpy(), ref_v, atol=1e-5)


def test_unknown_modality_names_the_available_ones():
    store = GraphStore(toy_data())
    with pytest.raises(KeyError, match=r"'audio'.*\['image', 'text'\]"):
        store.item_knn("audio", 3)
    with pytest.raises(KeyError, match="image"):
        store.user_profiles("audio")


class CountingBuilders:
    def __init__(self, monkeypatch):
        self.calls: dict[str, int] = {}
        for name in ("jaccard_topk", "knn_graphs", "user_item_adjacency"):
            real = getattr(graph_store, name)
            monkeypatch.setattr(graph_store, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return real(*args, **kwargs)
        return counted


def use_every_graph(store: GraphStore) -> list:
    return [store.user_item_adjacency(), store.item_knn("image", 3), store.user_knn("image", 3),
            store.item_jaccard(2), store.user_jaccard(2)]


def test_graphs_are_built_once_per_process_and_once_per_dataset_on_disk(tmp_path, monkeypatch):
    counts = CountingBuilders(monkeypatch)
    data = toy_data()
    first = GraphStore(data, GraphCache(tmp_path, data.fingerprint))
    a = use_every_graph(first)
    use_every_graph(first)
    # item_knn and user_knn of a modality come from one knn_graphs call
    assert counts.calls == {"user_item_adjacency": 1, "knn_graphs": 1, "jaccard_topk": 2}
    assert len(list(tmp_path.glob("*.pt"))) == 4

    second = GraphStore(data, GraphCache(tmp_path, data.fingerprint))      # a later run
    b = use_every_graph(second)
    assert counts.calls == {"user_item_adjacency": 1, "knn_graphs": 1, "jaccard_topk": 2}
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            assert all(torch.equal(p, q) for p, q in zip(x, y))
        else:
            assert torch.equal(x.to_dense(), y.to_dense())

    other = toy_data(fingerprint="changed-data")
    GraphStore(other, GraphCache(tmp_path, other.fingerprint)).item_jaccard(2)
    assert counts.calls["jaccard_topk"] == 3


def test_generic_cached_hook(tmp_path):
    data = toy_data()
    calls = []
    store = GraphStore(data, GraphCache(tmp_path, data.fingerprint))
    build = lambda: calls.append(1) or torch.arange(3)  # noqa: E731
    assert torch.equal(store.cached("model_graph", {"alpha": 0.5}, build), torch.arange(3))
    store.cached("model_graph", {"alpha": 0.5}, build)
    GraphStore(data, GraphCache(tmp_path, data.fingerprint)).cached("model_graph", {"alpha": 0.5}, build)
    assert len(calls) == 1
    store.cached("model_graph", {"alpha": 0.7}, build)
    assert len(calls) == 2


def test_store_without_cache_builds_in_memory_only(tmp_path):
    store = GraphStore(toy_data())
    assert store.item_jaccard(2) is store.item_jaccard(2)
    assert list(tmp_path.iterdir()) == []
