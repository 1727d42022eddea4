"""Top-K ranking metrics of the evaluation protocol (MMRec's definitions, vectorised).

For a user with relevant set R (|R| >= 1) and a ranked list whose position i (1-based) is a hit
when rel_i = 1, the per-user values at cut-off K are

    Recall@K    = sum_{i<=K} rel_i / |R|
    Precision@K = sum_{i<=K} rel_i / K
    NDCG@K      = DCG@K / IDCG@K,  DCG@K = sum_{i<=K} rel_i / log2(i+1),
                  IDCG@K = sum_{i<=min(|R|,K)} 1 / log2(i+1)
    MAP@K       = 1/min(|R|,K) * sum_{i<=K} P@i * rel_i

and a reported metric is the mean over evaluated users (no rounding, unlike MMRec's 4 digits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

METRIC_NAMES = ("recall", "ndcg", "precision", "map")


def hits_from_topk(topk_index: Tensor, target_ptr: Tensor, target_index: Tensor) -> Tensor:
    """Bool [B, K]: whether topk_index[b, j] is one of row b's relevant items.

    Relevant items are given in CSR form: row b owns target_index[target_ptr[b]:target_ptr[b+1]]
    (any order). Each (row, item) pair is encoded as the key row * n + item,
    the relevant keys are sorted once and every recommended key is looked up by binary search, so
    memory stays O(B*K + nnz) whatever the catalogue size.
    """
    if topk_index.dim() != 2:
        raise ValueError(f"topk_index: expected a [B, K] tensor, got shape {tuple(topk_index.shape)}")
    n_rows = topk_index.shape[0]
    if target_ptr.shape != (n_rows + 1,) or int(target_ptr[-1]) != target_index.numel():
        raise ValueError(
            f"target_ptr: expected shape ({n_rows + 1},) ending at nnz={target_index.numel()}, "
            f"got shape {tuple(target_ptr.shape)} ending at {int(target_ptr[-1]) if target_ptr.numel() else None}"
        )
    device = topk_index.device
    target_ptr, target_index = target_ptr.to(device), target_index.to(device).long()
    if target_index.numel() == 0 or topk_index.numel() == 0:
        return torch.zeros(topk_index.shape, dtype=torch.bool, device=device)

    n = int(torch.maximum(topk_index.max(), target_index.max())) + 1
    target_row = torch.repeat_interleave(
        torch.arange(n_rows, device=device), target_ptr[1:] - target_ptr[:-1]
    )
    target_keys = torch.sort(target_row * n + target_index).values
    topk_keys = torch.arange(n_rows, device=device).unsqueeze(1) * n + topk_index.long()
    pos = torch.searchsorted(target_keys, topk_keys).clamp_(max=target_keys.numel() - 1)
    return target_keys[pos] == topk_keys


def per_user_metrics(hits: Tensor, n_relevant: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per-user float64 values {'recall@k', 'ndcg@k', 'precision@k', 'map@k'} for k in ks.

    hits: bool [B, K] with K >= max(ks); n_relevant: [B] sizes of the users' relevant sets (>= 1).
    """
    if hits.dim() != 2 or hits.shape[1] < max(ks):
        raise ValueError(f"hits: expected [B, K] with K >= max(ks)={max(ks)}, got shape {tuple(hits.shape)}")
    if n_relevant.shape != hits.shape[:1]:
        raise ValueError(f"n_relevant: expected shape ({hits.shape[0]},), got {tuple(n_relevant.shape)}")
    if bool((n_relevant < 1).any()):
        raise ValueError(
            f"n_relevant: {int((n_relevant < 1).sum())} user(s) have no relevant item; "
            "only users with >= 1 relevant item can be evaluated"
        )
    device = hits.device
    rel = hits.double()
    n_rel = n_relevant.to(device).double()  # |R| per user
    rank = torch.arange(1, hits.shape[1] + 1, device=device, dtype=torch.float64)  # i = 1..K
    discount = 1.0 / torch.log2(rank + 1.0)

    cum_hits = rel.cumsum(1)  # sum_{j<=i} rel_j
    dcg = (rel * discount).cumsum(1)
    ideal_dcg = discount.cumsum(0)  # ideal_dcg[m-1] = DCG of m hits in the first m slots
    sum_prec_at_hits = (cum_hits / rank * rel).cumsum(1)  # sum_{j<=i} P@j * rel_j

    out: dict[str, Tensor] = {}
    for k in ks:
        n_ideal = torch.clamp(n_rel, max=k)  # min(|R|, K)
        out[f"recall@{k}"] = cum_hits[:, k - 1] / n_rel
        out[f"ndcg@{k}"] = dcg[:, k - 1] / ideal_dcg[n_ideal.long() - 1]
        out[f"precision@{k}"] = cum_hits[:, k - 1] / k
        out[f"map@{k}"] = sum_prec_at_hits[:, k - 1] / n_ideal
    return out


class RankingMetrics(Metric):
    """Recall / NDCG / Precision / MAP at several cut-offs, averaged over evaluated users.

    States are float64 sums over users plus a user count, all reduced by summation, so per-rank
    states under DDP (or merged with ``merge_state``) give the same mean as one process.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        ks: Sequence[int] = (5, 10, 20, 50),
        metrics: Sequence[str] = METRIC_NAMES,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        ks = (ks,) if isinstance(ks, int) else tuple(ks)
        if not ks or not metrics:
            raise ValueError("ks and metrics must both be non-empty")
        for name in metrics:
            if name not in METRIC_NAMES:
                raise ValueError(f"metrics: unknown metric {name!r}, expected one of {METRIC_NAMES}")
        for k in ks:
            if int(k) != k or k <= 0:
                raise ValueError(f"ks: cut-off {k!r} must be a positive integer")
        self.ks = tuple(int(k) for k in ks)
        self.keys = [f"{name}@{k}" for name in metrics for k in self.ks]
        self.add_state("sums", torch.zeros(len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_users", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, topk_index: Tensor, target_ptr: Tensor, target_index: Tensor) -> None:
        """Add a batch of users: their ranked items [B, >=max(ks)] and relevant items in CSR form.

        Each row's relevant items must be distinct: |R| is taken as the row's length in target_ptr.
        """
        if topk_index.dim() != 2 or topk_index.shape[1] < max(self.ks):
            raise ValueError(
                f"topk_index: expected [B, K] with K >= max(ks)={max(self.ks)}, got shape {tuple(topk_index.shape)}"
            )
        hits = hits_from_topk(topk_index, target_ptr, target_index)
        n_relevant = (target_ptr[1:] - target_ptr[:-1]).to(hits.device)
        values = per_user_metrics(hits, n_relevant, self.ks)
        self.sums += torch.stack([values[key].sum() for key in self.keys]).to(self.sums.device)
        self.n_users += hits.shape[0]

    def update_dense(self, scores: Tensor, target: Tensor) -> None:
        """Convenience for small cases: scores [B, N] and a bool relevance matrix [B, N]."""
        if scores.shape != target.shape or scores.dim() != 2:
            raise ValueError(
                f"scores/target: expected equal [B, N] shapes, got {tuple(scores.shape)} and {tuple(target.shape)}"
            )
        if scores.shape[1] < max(self.ks):
            raise ValueError(f"scores: need at least max(ks)={max(self.ks)} items, got {scores.shape[1]}")
        topk_index = torch.topk(scores, max(self.ks), dim=1).indices
        rows, items = target.bool().nonzero(as_tuple=True)  # row-major, so already grouped by row
        counts = torch.bincount(rows, minlength=scores.shape[0])
        target_ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.update(topk_index, target_ptr, items)

    def compute(self) -> dict[str, Tensor]:
        if self.n_users == 0:
            raise RuntimeError("RankingMetrics.compute: no user has been evaluated (call update first)")
        means = self.sums / self.n_users
        return {key: means[i] for i, key in enumerate(self.keys)}
