"""`RecommenderModule.rank` scores users in chunks: same lists as one block, masks respected."""
from __future__ import annotations

import math

import torch

from src.data.formats import Interactions, RecData
from src.models.base import Recommender
from src.models.module import RecommenderModule


class FixedScores(Recommender):
    """Scores read from a fixed `[n_users, n_items]` matrix."""

    def __init__(self, scores: torch.Tensor):
        empty = Interactions(torch.zeros(0, dtype=torch.long).numpy(), torch.zeros(0, dtype=torch.long).numpy())
        super().__init__(RecData(name="fixed", n_users=scores.shape[0], n_items=scores.shape[1], train=empty,
                                 valid=empty, test=empty, features={}, fingerprint="fixed"))
        self.register_buffer("scores", scores)

    def full_scores(self, users):
        return self.scores[users]


def _batch(n_users: int, n_items: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    users = torch.randperm(n_users, generator=g)[:150]
    mask = torch.rand(len(users), n_items, generator=g) < 0.3
    mask[7, : n_items - 3] = True          # a user with only 3 unmasked items: empty slots
    rows, cols = mask.nonzero(as_tuple=True)
    order = torch.randperm(len(rows), generator=g)  # exclusions in no particular order
    return {"users": users, "exclude_row": rows[order], "exclude_col": cols[order], "mask": mask}


def test_chunked_rank_equals_one_block_and_a_naive_ranking():
    n_users, n_items = 300, 120
    scores = torch.randn(n_users, n_items, generator=torch.Generator().manual_seed(0))
    batch = _batch(n_users, n_items, 1)
    whole = RecommenderModule(FixedScores(scores), score_chunk=1 << 30, topk_saved=20)
    chunked = RecommenderModule(FixedScores(scores), score_chunk=1, topk_saved=20)  # 64 users a chunk
    a, b = whole.rank(batch), chunked.rank(batch)
    assert a.shape == (150, 50) and torch.equal(a, b)
    for row in (0, 7, 64, 149):  # naive: sort the unmasked items of that user by score
        s = scores[batch["users"][row]].clone()
        s[batch["mask"][row]] = -math.inf
        ranked = [i for i in torch.argsort(s, descending=True).tolist() if not batch["mask"][row, i]]
        expect = (ranked + [n_items] * 50)[:50]
        assert a[row].tolist() == expect
