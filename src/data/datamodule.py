"""The LightningDataModule: loads a validated dataset, owns its graphs, and serves batches.

Training batches are `(user, pos, neg)` id tensors sampled on the training device
(`sampling.BPRSampler`); evaluation batches carry the users, the items to mask and the
relevant items (`sampling.EvalBatches`). Graphs are built through `self.graphs`
(a `GraphStore` with an on-disk cache under `data/<name>/cache/`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import lightning as L
import scipy.sparse as sp
import torch

from src.data.cache import GraphCache
from src.data.csr import csr_tensors
from src.data.formats import DatasetError, RecData, load_dataset
from src.data.graph_store import GraphStore
from src.data.sampling import BPRSampler, EpochBatches, EvalBatches

log = logging.getLogger(__name__)


class DatasetMissing(DatasetError):
    """The dataset's files are not in place and the dataset has no builder."""


class RecDataModule(L.LightningDataModule):
    def __init__(self, name: str, data_dir: str, modalities: dict[str, str] | None = None,
                 builder: Callable[..., object] | None = None, missing_help: str = "",
                 train_batch_size: int = 2048, eval_batch_size: int = 4096, seed: int | None = 0,
                 mask_valid_in_test: bool = True, cache_graphs: bool = True,
                 transform: Callable[[RecData], RecData] | None = None, knn: dict | None = None,
                 **_: object):
        super().__init__()
        self.name, self.root = name, Path(data_dir) / name
        self.modalities = dict(modalities or {})
        self.builder, self.missing_help = builder, missing_help
        self.train_batch_size, self.eval_batch_size = int(train_batch_size), int(eval_batch_size)
        self.seed = 0 if seed is None else int(seed)
        self.mask_valid_in_test, self.cache_graphs = mask_valid_in_test, cache_graphs
        self.transform = transform
        self.knn = dict(knn) if knn else None   # cosine KNN method: exact (default) or faiss
        self.data: RecData | None = None
        self.graphs: GraphStore | None = None
        self._eval: dict[str, EvalBatches] = {}

    # ---- files -------------------------------------------------------------------------
    def files_present(self) -> bool:
        needed = [self.root / f"{self.name}.inter", *(self.root / f for f in self.modalities.values())]
        return all(p.is_file() for p in needed)

    def prepare_data(self) -> None:
        """Build the dataset when its files are missing and a builder is configured."""
        if self.files_present():
            return
        if self.builder is None:
            missing = [str(p) for p in [self.root / f"{self.name}.inter",
                                        *(self.root / f for f in self.modalities.values())] if not p.is_file()]
            raise DatasetMissing(f"dataset '{self.name}' is not in {self.root}: missing {', '.join(missing)}.\n"
                                 f"{self.missing_help}".rstrip())
        log.info("building dataset %s into %s", self.name, self.root)
        self.builder(out_dir=self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        data = load_dataset(self.root, self.name, self.modalities)
        if self.transform is not None:
            data = self.transform(data)
        self.data = data
        cache = GraphCache(self.root / "cache", data.fingerprint, enabled=self.cache_graphs)
        self.graphs = GraphStore(data, cache, knn=self.knn)
        log.info("%r", data)

    # ---- batches -----------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        sampler = BPRSampler(self.data.train.users, self.data.train.items, self.data.n_items,
                             self.train_batch_size, seed=self.seed, device=self._device(),
                             rank=rank, world_size=world)
        trainer = self.trainer
        return EpochBatches(sampler, lambda: trainer.current_epoch if trainer is not None else 0)

    def eval_batches(self, split: str) -> EvalBatches:
        """Batches for `split` ('valid' or 'test'): every user with >= 1 interaction in it."""
        device = self._device()
        key = f"{split}@{device}"
        if key not in self._eval:
            d = self.data
            masked = [d.train] + ([d.valid] if split == "test" and self.mask_valid_in_test else [])
            ex_users = np.concatenate([s.users for s in masked])
            ex_items = np.concatenate([s.items for s in masked])
            exclude = sp.csr_matrix((np.ones(len(ex_users), np.float32), (ex_users, ex_items)),
                                    shape=(d.n_users, d.n_items))
            target = d.split(split).matrix(d.n_users, d.n_items)
            users = np.flatnonzero(np.diff(target.indptr) > 0)
            rank, world = self._rank_world()
            users = torch.as_tensor(users[rank::world], device=device)
            self._eval[key] = EvalBatches(users, csr_tensors(exclude, device), csr_tensors(target, device),
                                          self.eval_batch_size)
        return self._eval[key]

    def val_dataloader(self):
        return self.eval_batches("valid")

    def test_dataloader(self):
        return self.eval_batches("test")
