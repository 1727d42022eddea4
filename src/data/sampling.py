"""BPR triplet sampling on the training device, and the evaluation batches.

Each training epoch visits every training pair once, in a fresh order drawn from
(seed, epoch), and pairs it with one negative item drawn uniformly from the items that
user never interacted with in training (MMRec: `training_neg_sample_num: 1`). Negatives
are drawn for the whole epoch at once and collisions are redrawn in vectorised rounds.
Under DDP every rank draws the same permutation and keeps its own strided share.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from src.data.csr import gather_rows


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    # One independent stream per (seed, epoch[, rank]); the multiplier keeps streams apart.
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)


class BPRSampler:
    """Samples `(user, positive, negative)` batches from the training pairs."""

    def __init__(self, users: np.ndarray | Tensor, items: np.ndarray | Tensor, n_items: int,
                 batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.users = torch.as_tensor(users, dtype=torch.long).to(self.device)
        self.items = torch.as_tensor(items, dtype=torch.long).to(self.device)
        self.n_items, self.batch_size, self.seed = int(n_items), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        # Sorted (user, item) keys: membership of a candidate negative is one searchsorted.
        self.train_keys = torch.sort(self.users * self.n_items + self.items).values
        counts = torch.bincount(self.users)
        if len(counts) and int(counts.max()) >= self.n_items:
            u = int(torch.argmax(counts))
            raise ValueError(f"user {u} interacted with all {self.n_items} items in training; "
                             f"no negative item can be sampled for them")

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return math.ceil(self.pairs_per_rank / self.batch_size)

    @property
    def pairs_per_rank(self) -> int:
        return math.ceil(len(self.users) / self.world_size)

    def is_training_pair(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.train_keys, keys).clamp_(max=len(self.train_keys) - 1)
        return self.train_keys[pos] == keys

    def sample_negatives(self, users: Tensor, generator: torch.Generator) -> Tensor:
        neg = torch.randint(self.n_items, users.shape, generator=generator, device=self.device)
        todo = torch.nonzero(self.is_training_pair(users, neg)).squeeze(1)
        while len(todo):  # each round redraws only the collisions
            neg[todo] = torch.randint(self.n_items, todo.shape, generator=generator, device=self.device)
            todo = todo[self.is_training_pair(users[todo], neg[todo])]
        return neg

    def epoch(self, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """All of this rank's triplets for `epoch`, in their training order."""
        perm = torch.randperm(len(self.users), generator=_generator(self.device, self.seed, epoch),
                              device=self.device)
        if self.world_size > 1:
            # pad by wrapping so every rank gets the same number of pairs (no DDP hang)
            total = self.pairs_per_rank * self.world_size
            perm = torch.cat([perm, perm[: total - len(perm)]])[self.rank::self.world_size]
        users, pos = self.users[perm], self.items[perm]
        neg = self.sample_negatives(users, _generator(self.device, self.seed, epoch, self.rank + 1))
        return users, pos, neg

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        users, pos, neg = self.epoch(epoch)
        for start in range(0, len(users), self.batch_size):
            end = start + self.batch_size
            yield users[start:end], pos[start:end], neg[start:end]


class EpochBatches:
    """A re-iterable over one epoch of BPR batches; the epoch number is read at `iter()`.

    Lightning calls `iter()` once per epoch, so each epoch gets a fresh draw.
    """

    def __init__(self, sampler: BPRSampler, current_epoch):
        self.sampler, self.current_epoch = sampler, current_epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return self.sampler.batches(int(self.current_epoch()))


class EvalBatches:
    """Batches of evaluation users with the items to mask and the relevant items.

    `exclude` and `target` are CSR `(indptr, indices)` tensors over all users; every
    batch is a dict of tensors already on the evaluation device:
    `users`, `exclude_row`/`exclude_col` (entries to set to -inf in the score matrix),
    `target_ptr`/`target_index` (the batch users' relevant items in CSR form).
    """

    def __init__(self, users: Tensor, exclude: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor],
                 batch_size: int):
        self.users, self.exclude, self.target = users, exclude, target
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.users) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.users), self.batch_size):
            users = self.users[start:start + self.batch_size]
            ex_row, ex_col, _ = gather_rows(*self.exclude, users)
            _, t_idx, t_ptr = gather_rows(*self.target, users)
            yield {"users": users, "exclude_row": ex_row, "exclude_col": ex_col,
                   "target_ptr": t_ptr, "target_index": t_idx}
