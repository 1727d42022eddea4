"""The run outputs fixed by DESIGN.md ("Run outputs"): metrics.json and topk.tsv.

Both are written atomically (temp file, then rename) so a crash never leaves half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(path: Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=False) + "\n")


def write_topk(path: Path, users: np.ndarray, topk: np.ndarray, n_items: int | None = None) -> None:
    """One line per test user, ascending ids: `userID<TAB>i1,i2,...,i50` (no header).

    Ids >= n_items mark slots no real item could fill (see `RecommenderModule.rank`) and
    are left out, so such a line is shorter.
    """
    order = np.argsort(users, kind="stable")
    rows = topk[order].tolist()
    if n_items is not None:
        rows = [[i for i in row if i < n_items] for row in rows]
    lines = [f"{u}\t{','.join(map(str, row))}" for u, row in zip(users[order].tolist(), rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_topk(path: Path) -> dict[int, list[int]]:
    """Inverse of `write_topk`."""
    out = {}
    for line in Path(path).read_text().splitlines():
        user, items = line.split("\t")
        out[int(user)] = [int(i) for i in items.split(",")] if items else []
    return out
