"""Shared fixtures: paths to the repository, the shared reference data and small datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA_DIR = ROOT / "data"


def write_inter(path: Path, rows, header: str = "userID\titemID\trating\ttimestamp\tx_label") -> Path:
    """Write an .inter file from (user, item, x_label) rows (rating 1.0, timestamp = row index)."""
    lines = [header] + [f"{u}\t{i}\t1.0\t{t}\t{x}" for t, (u, i, x) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def toy_rows(n_users: int = 6, n_items: int = 8, per_user: int = 5):
    """Rows of a small valid dataset: user u has items u, u+1, ... (mod n_items), the last
    two of them in valid and test; every item occurs, so ids are dense."""
    assert n_users + per_user - 1 >= n_items
    labels = [0] * (per_user - 2) + [1, 2]
    return [(u, (u + j) % n_items, labels[j]) for u in range(n_users) for j in range(per_user)]


def write_toy_dataset(root: Path, seed: int = 1):
    """Write a valid MMRec-format dataset `toy` (image 6-d, text 4-d) into `root`; its rows."""
    root.mkdir(parents=True, exist_ok=True)
    rows = toy_rows()
    write_inter(root / "toy.inter", rows)
    n_items = max(i for _, i, _ in rows) + 1
    rng = np.random.default_rng(seed)
    np.save(root / "image_feat.npy", rng.normal(size=(n_items, 6)).astype(np.float32))
    np.save(root / "text_feat.npy", rng.normal(size=(n_items, 4)).astype(np.float32))
    return rows


@pytest.fixture
def toy_dataset(tmp_path):
    """A valid MMRec-format dataset `toy` with two modalities in tmp_path."""
    return tmp_path, write_toy_dataset(tmp_path)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    d = DATA_DIR / "ml100k"
    if not (d / "ml100k.inter").is_file():
        pytest.skip("data/ml100k not built (make data DATASET=ml100k)")
    return d
