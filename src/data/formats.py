"""Load and validate a dataset in the MMRec format (DESIGN.md, "Dataset format").

`data/<name>/<name>.inter` is tab-separated with the header
`userID itemID rating timestamp x_label` (rating and timestamp optional); ids are dense
from 0; `x_label` is 0 train / 1 valid / 2 test. Each modality is a float `[n_items, d]`
`.npy` file whose row i belongs to item i.

Every problem raises one `DatasetError` that names the file, the line where there is one,
and what was expected. Nothing here writes to disk.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
SPLITS = {"train": 0, "valid": 1, "test": 2}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message says which file and why."""


@dataclass(frozen=True)
class Interactions:
    """One split as two aligned int64 arrays, in file order."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def matrix(self, n_users: int, n_items: int) -> sp.csr_matrix:
        """Binary `n_users x n_items` CSR matrix of this split (sorted indices)."""
        data = np.ones(len(self.users), dtype=np.float32)
        m = sp.csr_matrix((data, (self.users, self.items)), shape=(n_users, n_items))
        m.sort_indices()
        return m


@dataclass
class RecData:
    """A loaded, validated dataset: the splits, the modal features and a content fingerprint."""

    name: str
    n_users: int
    n_items: int
    train: Interactions
    valid: Interactions
    test: Interactions
    features: dict[str, np.ndarray] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def split(self, name: str) -> Interactions:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        return getattr(self, name)

    def train_matrix(self) -> sp.csr_matrix:
        return self.train.matrix(self.n_users, self.n_items)

    def __repr__(self) -> str:
        feats = ", ".join(f"{m}: {f.shape[1]}-d" for m, f in self.features.items()) or "none"
        return (f"RecData({self.name}: {self.n_users} users, {self.n_items} items, "
                f"train/valid/test {len(self.train)}/{len(self.valid)}/{len(self.test)}, "
                f"features {feats})")


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _first_bad_line(path: Path, column: str) -> tuple[int, str]:
    """Find the first value of `column` that is not a non-negative integer (slow path)."""
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=[column])[column]
    ok = raw.str.fullmatch(r"\d+")
    idx = int(np.flatnonzero(~ok.to_numpy())[0])
    return idx + 2, raw.iloc[idx]  # +1 for the header, +1 for 1-based lines


def read_inter(path: Path) -> pd.DataFrame:
    """Read an `.inter` file and check its columns and id values."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: interaction file not found")
    try:
        header = pd.read_csv(path, sep="\t", nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read as a tab-separated file with a header ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; the header is {header}, "
                           f"expected tab-separated 'userID itemID rating timestamp x_label'")
    try:
        df = pd.read_csv(path, sep="\t", usecols=list(REQUIRED_COLUMNS),
                         dtype={c: np.int64 for c in REQUIRED_COLUMNS})
    except (ValueError, pd.errors.ParserError):
        for col in REQUIRED_COLUMNS:
            try:
                line, value = _first_bad_line(path, col)
            except IndexError:
                continue
            raise DatasetError(f"{path}, line {line}: {col} is {value!r}; "
                               f"expected a non-negative integer") from None
        raise DatasetError(f"{path}: malformed rows (check that every line has the header's columns)") from None
    if len(df) == 0:
        raise DatasetError(f"{path}: no interactions")
    for col in REQUIRED_COLUMNS:
        neg = np.flatnonzero(df[col].to_numpy() < 0)
        if len(neg):
            raise DatasetError(f"{path}, line {neg[0] + 2}: {col} is {df[col].iloc[neg[0]]}; "
                               f"expected a non-negative integer")
    bad = np.flatnonzero(~np.isin(df["x_label"].to_numpy(), list(SPLITS.values())))
    if len(bad):
        raise DatasetError(f"{path}, line {bad[0] + 2}: x_label is {df['x_label'].iloc[bad[0]]}; "
                           f"expected 0 (train), 1 (valid) or 2 (test)")
    return df


def _check_dense(path: Path, ids: np.ndarray, what: str) -> int:
    n = int(ids.max()) + 1
    present = np.zeros(n, dtype=bool)
    present[ids] = True
    if not present.all():
        gaps = np.flatnonzero(~present)
        raise DatasetError(f"{path}: {what} ids are not dense: {len(gaps)} of 0..{n - 1} never occur "
                           f"(first missing: {gaps[0]}); expected every id from 0 to the maximum")
    return n


def check_interactions(path: Path, df: pd.DataFrame) -> tuple[int, int]:
    """Dense ids, no duplicate pairs, every user has a training interaction."""
    users, items = df["userID"].to_numpy(), df["itemID"].to_numpy()
    n_users = _check_dense(path, users, "user")
    n_items = _check_dense(path, items, "item")
    key = users * n_items + items
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[order][1:] == key[order][:-1])
    if len(dup):
        first, second = sorted(order[dup[0]:dup[0] + 2])
        raise DatasetError(f"{path}, lines {first + 2} and {second + 2}: duplicate (userID, itemID) pair "
                           f"({users[first]}, {items[first]}); expected each pair once")
    has_train = np.zeros(n_users, dtype=bool)
    has_train[users[df["x_label"].to_numpy() == 0]] = True
    if not has_train.all():
        u = int(np.flatnonzero(~has_train)[0])
        n_bad = int((~has_train).sum())
        raise DatasetError(f"{path}: user {u} has no training interaction (x_label 0); "
                           f"{n_bad} user(s) in all. Expected every user in the training split "
                           f"(MMRec filters cold-start users before splitting)")
    return n_users, n_items


def load_features(path: Path, n_items: int) -> np.ndarray:
    """A float `[n_items, d]` feature table, returned as C-contiguous float32."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: feature file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
    if arr.ndim != 2:
        raise DatasetError(f"{path}: has shape {arr.shape}; expected a 2-D [n_items, dim] array")
    if arr.shape[0] != n_items:
        raise DatasetError(f"{path}: has {arr.shape[0]} rows; expected one row per item ({n_items} items)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatasetError(f"{path}: has dtype {arr.dtype}; expected float32")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DatasetError(f"{path}: row {row} (item {row}) holds NaN or inf; "
                           f"{int((~finite).sum())} bad row(s) in all; expected finite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_dataset(root: str | os.PathLike, name: str, modalities: dict[str, str] | None = None) -> RecData:
    """Load `root/<name>.inter` and the named modality files, validating everything."""
    root = Path(root)
    inter_path = root / f"{name}.inter"
    df = read_inter(inter_path)
    n_users, n_items = check_interactions(inter_path, df)
    label = df["x_label"].to_numpy()
    users, items = df["userID"].to_numpy(np.int64), df["itemID"].to_numpy(np.int64)
    splits = {s: Interactions(users[label == v].copy(), items[label == v].copy()) for s, v in SPLITS.items()}
    digest = hashlib.sha256(file_digest(inter_path).encode())
    features = {}
    for modality, filename in (modalities or {}).items():
        features[modality] = load_features(root / filename, n_items)
        digest.update(f"{modality}:{file_digest(root / filename)}".encode())
    return RecData(name=name, n_users=n_users, n_items=n_items, features=features,
                   fingerprint=digest.hexdigest()[:16], **splits)
