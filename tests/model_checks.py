"""Checks shared by the VBPR and MMGCN tests: a tiny hand-made dataset and a short ml100k run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.formats import Interactions, RecData
from src.data.graph_store import GraphStore
from src.train import train
from tests.helpers import train_config


def tiny_data(modalities: dict[str, int] | None = None, n_users: int = 5, n_items: int = 7,
              seed: int = 0) -> RecData:
    """Random training pairs (every user has >= 1; item 6 has none) and features per modality."""
    rng = np.random.default_rng(seed)
    pairs = sorted({(u, i) for u in range(n_users) for i in range(n_items - 1) if rng.random() < 0.4}
                   | {(u, u % (n_items - 1)) for u in range(n_users)})
    split = lambda ps: Interactions(np.array([p[0] for p in ps], dtype=np.int64),  # noqa: E731
                                    np.array([p[1] for p in ps], dtype=np.int64))
    dims = {"image": 6, "text": 4} if modalities is None else modalities
    return RecData(name="tiny", n_users=n_users, n_items=n_items, train=split(pairs),
                   valid=split([(0, n_items - 1)]), test=split([(1, n_items - 1)]),
                   features={m: rng.standard_normal((n_items, d)).astype(np.float32) for m, d in dims.items()},
                   fingerprint=f"tiny-{seed}-{sorted(dims.items())}")


def tiny_store(data: RecData) -> GraphStore:
    return GraphStore(data)


def dense_train(data: RecData) -> np.ndarray:
    r = np.zeros((data.n_users, data.n_items))
    r[data.train.users, data.train.items] = 1
    return r


def random_recall_at_20(ml100k_dir: Path) -> float:
    """Expected test recall@20 of a uniform random ranking (as in test_train.py)."""
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    n_items = inter.itemID.nunique()
    seen = inter[inter.x_label < 2].groupby("userID").size()
    return float(np.mean(20 / (n_items - seen)))


def short_run(tmp_path: Path, overrides: list[str]) -> tuple[dict, pd.DataFrame]:
    """Train in-process with the real config; return metrics.json and per-epoch train losses.

    Runs with one intra-op thread: on 2 cores shared with other jobs, two spinning torch threads
    make small products 10x slower. The previous thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(train_config(tmp_path, overrides))
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    logged = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    losses = logged.dropna(subset=["train/loss"]).groupby("epoch")[[c for c in logged if c.startswith("train/")]].first()
    return metrics, losses
