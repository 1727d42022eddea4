"""BPR triplet sampling and evaluation batches."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from src.data.csr import csr_tensors, gather_rows
from src.data.sampling import BPRSampler, EvalBatches


def _random_pairs(n_users=50, n_items=30, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.random((n_users, n_items)) < density
    m[:, 0] = True  # dense rows for some users make collisions frequent
    m[0, :-1] = True  # user 0 has a single allowed negative: the last item
    u, i = np.nonzero(m)
    return u, i, m


def test_every_pair_once_per_epoch_and_negatives_valid():
    u, i, m = _random_pairs()
    s = BPRSampler(u, i, n_items=m.shape[1], batch_size=64, seed=3)
    for epoch in range(3):
        batches = list(s.batches(epoch))
        assert len(batches) == len(s) == int(np.ceil(len(u) / 64))
        users = torch.cat([b[0] for b in batches]).numpy()
        pos = torch.cat([b[1] for b in batches]).numpy()
        neg = torch.cat([b[2] for b in batches]).numpy()
        # every training pair exactly once
        assert sorted(zip(users, pos)) == sorted(zip(u, i))
        # negatives are never a training item of their user (checked on the dense matrix)
        assert not m[users, neg].any()
        assert (neg[users == 0] == m.shape[1] - 1).all()


def test_order_is_fresh_per_epoch_and_reproducible():
    u, i, m = _random_pairs()
    a = BPRSampler(u, i, m.shape[1], 32, seed=7)
    b = BPRSampler(u, i, m.shape[1], 32, seed=7)
    e0, e1 = a.epoch(0), a.epoch(1)
    assert not torch.equal(e0[0], e1[0]) or not torch.equal(e0[1], e1[1])
    for x, y in zip(e0, b.epoch(0)):
        assert torch.equal(x, y)
    c = BPRSampler(u, i, m.shape[1], 32, seed=8)
    assert not torch.equal(c.epoch(0)[1], e0[1])


def test_negatives_roughly_uniform():
    # one user with 2 training items out of 10: negatives uniform over the other 8
    u = np.zeros(2, dtype=np.int64)
    i = np.array([3, 7])
    s = BPRSampler(u, i, 10, 1000, seed=0)
    neg = s.sample_negatives(torch.zeros(80_000, dtype=torch.long), torch.Generator().manual_seed(0))
    counts = np.bincount(neg.numpy(), minlength=10)
    assert counts[3] == counts[7] == 0
    expected = 80_000 / 8
    assert np.all(np.abs(counts[[0, 1, 2, 4, 5, 6, 8, 9]] - expected) < 5 * np.sqrt(expected))


def test_ranks_partition_the_epoch():
    u, i, m = _random_pairs(n_users=41)
    world = 3
    shares = [BPRSampler(u, i, m.shape[1], 16, seed=1, rank=r, world_size=world).epoch(0) for r in range(world)]
    lengths = {len(s[0]) for s in shares}
    assert lengths == {int(np.ceil(len(u) / world))}  # equal shares: no rank waits on another
    pairs = [(a, b) for s in shares for a, b in zip(s[0].tolist(), s[1].tolist())]
    assert set(pairs) == set(zip(u.tolist(), i.tolist()))  # together they cover every pair
    assert len(pairs) - len(u) < world  # only the wrap-around padding repeats


def test_user_with_every_item_is_rejected():
    u = np.array([0, 0, 1]); i = np.array([0, 1, 0])
    with pytest.raises(ValueError, match="user 0 interacted with all 2 items"):
        BPRSampler(u, i, 2, 4)


def test_gather_rows_matches_scipy():
    rng = np.random.default_rng(0)
    m = sp.random(40, 25, density=0.2, format="csr", random_state=1)
    indptr, indices = csr_tensors(m)
    rows = torch.as_tensor(rng.choice(40, size=15, replace=False))
    batch_row, cols, ptr = gather_rows(indptr, indices, rows)
    sub = m[rows.numpy()]
    assert np.array_equal(ptr.numpy(), sub.indptr)
    assert np.array_equal(cols.numpy(), sub.indices)
    assert np.array_equal(batch_row.numpy(), np.repeat(np.arange(15), np.diff(sub.indptr)))


def test_eval_batches_cover_users_with_masks():
    rng = np.random.default_rng(2)
    train = sp.csr_matrix((rng.random((12, 9)) < 0.4).astype(np.float32))
    target = sp.csr_matrix((rng.random((12, 9)) < 0.2).astype(np.float32))
    users = torch.as_tensor(np.flatnonzero(np.diff(target.indptr) > 0))
    batches = list(EvalBatches(users, csr_tensors(train), csr_tensors(target), batch_size=5))
    assert torch.equal(torch.cat([b["users"] for b in batches]), users)
    for b in batches:
        dense = np.zeros((len(b["users"]), 9), bool)
        dense[b["exclude_row"].numpy(), b["exclude_col"].numpy()] = True
        assert np.array_equal(dense, train[b["users"].numpy()].toarray() > 0)
        t = target[b["users"].numpy()]
        assert np.array_equal(b["target_ptr"].numpy(), t.indptr)
        assert np.array_equal(b["target_index"].numpy(), t.indices)
