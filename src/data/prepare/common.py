"""Building blocks shared by every dataset builder: filtering, id remapping, the MMRec split,
and writing a dataset folder so that a reader never sees a half-written one.

Everything here is vectorised (pandas/numpy over whole columns); no loop runs per user,
item or interaction.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

INTER_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
COMPLETE_MARKER = ".complete"


def kcore_filter(df: pd.DataFrame, user_col: str, item_col: str, k: int = 5) -> tuple[pd.DataFrame, int]:
    """Iterative k-core: drop every user and every item with fewer than `k` rows *at once*,
    and repeat until no row goes. Returns the filtered frame (original index kept) and the
    number of rounds that removed something."""
    rounds = 0
    while len(df):
        user_deg = df.groupby(user_col, sort=False)[user_col].transform("size")
        item_deg = df.groupby(item_col, sort=False)[item_col].transform("size")
        keep = (user_deg >= k) & (item_deg >= k)
        if keep.all():
            break
        df = df[keep.to_numpy()]
        rounds += 1
    return df, rounds


def remap_ids(df: pd.DataFrame, col: str, new_col: str,
              order: str = "sorted") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace column `col` by `new_col` holding dense ids 0..n-1, given in ascending order of
    the original ids (`order="sorted"`) or in order of first appearance in `df`
    (`order="appearance"`, what MMRec's `0rating2inter.ipynb` does with `pd.unique`).
    Returns the new frame and the mapping (columns `col`, `new_col`)."""
    if order == "sorted":
        originals, dense = np.unique(df[col].to_numpy(), return_inverse=True)
    elif order == "appearance":
        dense, originals = pd.factorize(df[col], sort=False)
        originals = np.asarray(originals)
    else:
        raise ValueError(f"remap_ids: order is {order!r}; expected 'sorted' or 'appearance'")
    out = df.drop(columns=[col])
    out.insert(df.columns.get_loc(col), new_col, dense.astype(np.int64))
    mapping = pd.DataFrame({col: originals, new_col: np.arange(len(originals), dtype=np.int64)})
    return out, mapping


def split_labels(group_sizes: np.ndarray) -> np.ndarray:
    """MMRec's per-user split as labels, for rows already grouped by user (contiguous blocks
    of the given sizes, in order). A user with n < 10 rows gives n-2 train, 1 valid, 1 test;
    otherwise v = int(0.2 n) rows go to valid (v // 2) and test (the rest), in that order,
    after n - v train rows."""
    n = np.asarray(group_sizes, dtype=np.int64)
    if len(n) and n.min() < 3:
        raise ValueError(f"MMRec split needs at least 3 interactions per user (train, valid, "
                         f"test); {int((n < 3).sum())} user(s) have fewer (smallest: {n.min()})")
    held_out = np.where(n < 10, 2, (n * 0.2).astype(np.int64))  # int(n * 0.2), as the notebook
    n_valid = np.where(n < 10, 1, held_out // 2)
    n_train = n - held_out
    # position of each row inside its user's block
    starts = np.repeat(np.cumsum(n) - n, n)
    pos = np.arange(int(n.sum()), dtype=np.int64) - starts
    n_train, n_valid = np.repeat(n_train, n), np.repeat(n_valid, n)
    return np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2)).astype(np.int64)


def mmrec_split(df: pd.DataFrame, seed: int, user_col: str = "userID",
                order_cols: Sequence[str] = ("userID", "timestamp", "itemID")) -> pd.DataFrame:
    """Label rows train/valid/test (`x_label` 0/1/2) as MMRec's `preprocessing/1splitting.ipynb`.

    The rows are first put in a canonical order (`order_cols` that exist in `df`), so the result
    does not depend on the input's row order; then shuffled with `numpy.random.seed(seed)`
    semantics (pandas `sample(frac=1)`), stably sorted by user, and each user's rows are cut in
    their shuffled order by `split_labels`. Returns the rows in that final order, index reset.
    """
    cols = [c for c in order_cols if c in df.columns]
    out = df.sort_values(cols, kind="stable").reset_index(drop=True)
    # A fresh RandomState(seed) draws the same stream as the notebook's np.random.seed(seed)
    # followed by sample() on the global state, without touching the global state.
    out = out.sample(frac=1, random_state=np.random.RandomState(seed))
    out = out.sort_values(user_col, kind="stable").reset_index(drop=True)
    users = out[user_col].to_numpy()
    boundaries = np.flatnonzero(np.diff(users)) + 1
    sizes = np.diff(np.concatenate([[0], boundaries, [len(users)]]))
    out["x_label"] = split_labels(sizes) if len(out) else np.zeros(0, dtype=np.int64)
    return out


def _atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)`, then rename the temp file onto `path` (same directory)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a dataset file is for everyone
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_inter(df: pd.DataFrame, path: Path) -> None:
    """Write an MMRec `.inter` file: tab-separated `userID itemID rating timestamp x_label`
    (rating and timestamp only when present), rating as float (`3.0`), ids, timestamp and
    label as integers. Written to a temp file and renamed, so `path` is never partial."""
    missing = [c for c in ("userID", "itemID", "x_label") if c not in df.columns]
    if missing:
        raise ValueError(f"write_inter({path}): missing column(s) {missing}; have {list(df.columns)}")
    cols = [c for c in INTER_COLUMNS if c in df.columns]
    out = df[cols].astype({c: np.int64 for c in cols if c != "rating"})
    if "rating" in out:
        out["rating"] = out["rating"].astype(np.float64)
    _atomic_write(path, lambda tmp: out.to_csv(tmp, sep="\t", index=False, lineterminator="\n"))


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a small tab-separated table (e.g. an id mapping) atomically."""
    _atomic_write(path, lambda tmp: df.to_csv(tmp, sep="\t", index=False, lineterminator="\n"))


def save_npy(array: np.ndarray, path: Path) -> None:
    """`np.save` to a temp file, then rename onto `path`."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
    _atomic_write(path, write)


@contextlib.contextmanager
def atomic_dataset_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `final_dir`; when the block succeeds, write
    the `.complete` marker into it and move it into place (replacing an older `final_dir`).
    When the block raises, the temporary directory is removed and `final_dir` is untouched."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.building-"))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is for everyone
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).touch()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # A directory cannot be renamed onto a non-empty one: move the old one aside first, so
    # final_dir is always either the old complete dataset, absent for an instant, or the new one.
    old = None
    if final_dir.exists():
        old = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.old-"))
        os.replace(final_dir, old / final_dir.name)
    try:
        os.replace(tmp, final_dir)
    except BaseException:
        if old is not None:  # put the previous dataset back
            os.replace(old / final_dir.name, final_dir)
            old.rmdir()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def log_to_file(path: Path, logger_name: str = "src.data") -> Iterator[Path]:
    """Copy every INFO-or-higher record of `logger_name` (and its children) into `path` while
    the block runs, whatever the console logging is set to; the dataset folder keeps the log of
    the choices made while building it."""
    logger = logging.getLogger(logger_name)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # records below the logger's level never reach a handler
    logger.addHandler(handler)
    try:
        yield Path(path)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved_level)
