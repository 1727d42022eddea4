"""Corrupt one modality of a dataset (the paper's RQ4): a `RecDataModule` transform.

`ModalityNoise(modality, fraction, kind, scale, seed)` picks `round(fraction * n_items)` items
at random and corrupts their row of `data.features[modality]`:

- `kind="gaussian"`: x_i + scale * s * eps_i, eps_i ~ N(0, I), where s is the per-dimension
  standard deviation of that modality over all items, so `scale` means the same thing for a
  4096-d CNN table and a 384-d unit-norm text table;
- `kind="shuffle"`: the chosen rows are permuted among themselves by a random cycle, so every
  chosen item receives another chosen item's features (a derangement: with 2+ chosen items no
  row keeps its own).

Everything is drawn from `numpy.random.default_rng(seed)`, independent of the training seed,
so every model and training seed of a sweep sees the same corrupted table. Interactions and
the other modalities are left untouched (shared, not copied). When anything changes, the
fingerprint becomes `sha256(old fingerprint + parameters)`, so graphs built from clean
features are never reused for corrupted ones (the graph cache is keyed by the fingerprint).
What was done is kept in `.record` and, given `record_path`, written there as JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np

from src.data.formats import RecData
from src.utils.outputs import atomic_write_text

log = logging.getLogger(__name__)

NoiseKind = Literal["gaussian", "shuffle"]


class ModalityNoise:
    """Seeded, deterministic corruption of `fraction` of the items' rows of one modality."""

    def __init__(self, modality: str, fraction: float, kind: NoiseKind = "gaussian", scale: float = 1.0,
                 seed: int = 0, record_path: str | None = None):
        if kind not in ("gaussian", "shuffle"):
            raise ValueError(f"noise kind must be 'gaussian' or 'shuffle', got {kind!r}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"noise fraction must be in [0, 1], got {fraction!r}")
        if kind == "gaussian" and float(scale) < 0:
            raise ValueError(f"noise scale must be >= 0, got {scale!r}")
        self.modality, self.kind = str(modality), kind
        self.fraction, self.scale, self.seed = float(fraction), float(scale), int(seed)
        self.record_path = record_path
        self.record: dict | None = None

    def params(self) -> dict:
        """The parameters that define the corruption (what the fingerprint is salted with)."""
        p = {"modality": self.modality, "kind": self.kind, "fraction": self.fraction, "seed": self.seed}
        if self.kind == "gaussian":
            p["scale"] = self.scale
        return p

    def __call__(self, data: RecData) -> RecData:
        if self.modality not in data.features:
            raise KeyError(f"noise: dataset '{data.name}' has no modality {self.modality!r}; "
                           f"it has {data.modalities}")
        clean = data.features[self.modality]
        n_items = clean.shape[0]
        rng = np.random.default_rng(self.seed)
        n_corrupt = int(round(self.fraction * n_items))
        rows = np.sort(rng.choice(n_items, size=n_corrupt, replace=False))
        noisy = clean.copy()
        if self.kind == "gaussian":
            std = clean.std(axis=0, dtype=np.float64).astype(np.float32)
            noisy[rows] += (self.scale * std) * rng.standard_normal((n_corrupt, clean.shape[1]), dtype=np.float32)
        elif n_corrupt >= 2:
            order = rng.permutation(rows)  # a random cycle over the chosen rows
            noisy[order] = clean[np.roll(order, 1)]
        changed = int(np.any(noisy != clean, axis=1).sum())
        fingerprint = data.fingerprint
        if changed:  # an untouched table (fraction 0, scale 0) keeps its graphs
            salt = json.dumps(self.params(), sort_keys=True)
            fingerprint = hashlib.sha256(f"{data.fingerprint}|noise|{salt}".encode()).hexdigest()[:16]
        self.record = {**self.params(), "dataset": data.name, "n_items": n_items, "n_corrupted": n_corrupt,
                       "n_rows_changed": changed, "rows": rows.tolist(),
                       "fingerprint_clean": data.fingerprint, "fingerprint": fingerprint}
        log.info("noise: %s on %d of %d items of modality %r (fingerprint %s -> %s)", self.kind, n_corrupt,
                 n_items, self.modality, data.fingerprint, fingerprint)
        if self.record_path:
            atomic_write_text(Path(self.record_path), json.dumps(self.record) + "\n")
        features = {**data.features, self.modality: noisy}
        return dataclasses.replace(data, features=features, fingerprint=fingerprint)
