"""Check a dataset folder and say, line by line, what is right and what is wrong.

`verify_dataset` runs the format checks of `formats.py` (the functions `load_dataset` is made
of, one per report line, so a broken file does not hide the state of the others; feature
files are scanned block by block through a memory map instead of loaded whole), and adds
what a format check cannot know: the MMRec per-user split rule, the expected feature widths
and dtypes, and the paper's Table 1 statistics for Baby, Sports and Clothing. It returns a
structured `VerifyReport`; `str(report)` is the readable version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.formats import DatasetError, check_interactions, read_inter
from src.data.prepare.common import split_labels

@dataclass(frozen=True)
class DatasetStats:
    users: int
    items: int
    interactions: int


# The paper's Table 1 (identical to the statistics of MMRec's published files).
PAPER_TABLE1: dict[str, DatasetStats] = {
    "baby": DatasetStats(19_445, 7_050, 160_792),
    "sports": DatasetStats(35_598, 18_357, 296_337),
    "clothing": DatasetStats(39_387, 23_033, 278_677),
    "baby_ids": DatasetStats(19_445, 7_050, 160_792),  # the real Baby interactions, no features
}
# Feature widths of the Amazon sets: 4096-d CNN image features, 384-d all-MiniLM-L6-v2 text.
AMAZON_FEATURE_DIMS = {"image": 4096, "text": 384}
# float32 is the format's dtype; float64 is what MMRec's notebook writes for image features
# (np.array of Python floats) and loads as float32 without loss that matters.
ACCEPTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NAN_SCAN_ROWS = 4096  # rows per block when scanning a feature file for NaN/inf

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | FAIL | skip
    detail: str


@dataclass
class VerifyReport:
    name: str
    root: Path
    checks: list[Check] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No check failed (warnings and skipped checks allowed)."""
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"Verifying {self.root} (dataset '{self.name}')"]
        lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        counts = {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL, SKIP)}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines.append(f"RESULT: {'OK' if self.ok else 'FAILED'} ({summary})")
        return "\n".join(lines)


def _n(x: int) -> str:
    return f"{x:,}"


def check_split_rule(df: pd.DataFrame) -> tuple[bool, str]:
    """Do each user's label counts follow MMRec's per-user rule (`common.split_labels`)?"""
    users, labels = df["userID"].to_numpy(), df["x_label"].to_numpy()
    n_users = int(users.max()) + 1
    have = np.zeros((n_users, 3), dtype=np.int64)
    np.add.at(have, (users, labels), 1)
    sizes = have.sum(axis=1)
    if sizes.min() < 3:
        return False, f"{int((sizes < 3).sum())} user(s) have fewer than 3 interactions"
    rule = split_labels(sizes)  # labels of contiguous per-user blocks
    want = np.zeros((n_users, 3), dtype=np.int64)
    np.add.at(want, (np.repeat(np.arange(n_users), sizes), rule), 1)
    bad = np.flatnonzero((have != want).any(axis=1))
    if len(bad):
        u = int(bad[0])
        return False, (f"{len(bad)} user(s) break MMRec's per-user rule; user {u} has "
                       f"train/valid/test {have[u].tolist()}, the rule gives {want[u].tolist()} "
                       f"for {sizes[u]} interactions")
    return True, "per-user counts follow MMRec's rule (n<10: 1 valid, 1 test; else 20% held out)"


def check_feature_file(path: Path, n_items: int, dim: int | None) -> tuple[str, str, dict]:
    """Shape, dtype, width and finiteness of one feature file, read block by block."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return FAIL, f"{path}: file not found", {}
    except (ValueError, OSError, EOFError) as e:
        return FAIL, f"{path}: not a readable .npy array ({e})", {}
    info = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    head = f"{tuple(arr.shape)} {arr.dtype}"
    if arr.ndim != 2:
        return FAIL, f"{head}: expected a 2-D [n_items, dim] array", info
    if arr.shape[0] != n_items:
        return FAIL, f"{head}: {arr.shape[0]:,} rows, expected one per item ({n_items:,})", info
    if dim is not None and arr.shape[1] != dim:
        return FAIL, f"{head}: width {arr.shape[1]}, expected {dim}", info
    if arr.dtype not in ACCEPTED_DTYPES:
        return FAIL, f"{head}: dtype {arr.dtype}, expected float32 (or float64 as MMRec writes)", info
    bad_rows = 0
    first_bad = None
    for start in range(0, arr.shape[0], NAN_SCAN_ROWS):
        finite = np.isfinite(arr[start:start + NAN_SCAN_ROWS]).all(axis=1)
        if not finite.all():
            first_bad = first_bad if first_bad is not None else start + int(np.flatnonzero(~finite)[0])
            bad_rows += int((~finite).sum())
    if bad_rows:
        return FAIL, f"{head}: {bad_rows} row(s) hold NaN or inf (first: row {first_bad})", info
    note = "" if arr.dtype == np.float32 else " (loaded as float32)"
    return OK, f"{head}, all values finite{note}", info


def _check_mapping(report: VerifyReport, root: Path, filename: str, expected_rows: int) -> None:
    path = root / filename
    if not path.is_file():
        return  # optional: MMRec's folders and hand-placed copies may lack them
    try:
        rows = len(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        report.add(filename, WARN, f"{path}: unreadable ({e})")
        return
    status = OK if rows == expected_rows else WARN
    report.add(filename, status, f"{rows:,} rows" + ("" if status == OK else f", expected {expected_rows:,}"))


def verify_dataset(root: str | Path, name: str, modalities: dict[str, str] | None = None, *,
                   expected: DatasetStats | None | str = "paper",
                   feature_dims: dict[str, int] | None | str = "paper",
                   stats_status: str = FAIL) -> VerifyReport:
    """Check the dataset `name` in folder `root` (its `<name>.inter` and `modalities` files).

    `expected` are the statistics to compare with: `"paper"` looks `name` up in the paper's
    Table 1 (no comparison for other names), `None` skips the comparison. `feature_dims` alike
    (`"paper"`: 4096/384 for the image/text modalities of the paper's datasets).
    `stats_status` is the status a statistics mismatch gets (`FAIL`, or `WARN` where a differing
    count is legitimate, e.g. a dataset rebuilt from raw files with other settings)."""
    root = Path(root)
    modalities = dict(modalities or {})
    if expected == "paper":
        expected = PAPER_TABLE1.get(name)
    if feature_dims == "paper":
        feature_dims = AMAZON_FEATURE_DIMS if name in PAPER_TABLE1 else {}
    feature_dims = feature_dims or {}
    report = VerifyReport(name=name, root=root)
    inter = root / f"{name}.inter"

    try:
        df = read_inter(inter)
    except DatasetError as e:
        report.add("interactions", FAIL, str(e))
        df = None
    if df is not None:
        header = pd.read_csv(inter, sep="\t", nrows=0).columns.tolist()
        missing_optional = [c for c in ("rating", "timestamp") if c not in header]
        report.add("interactions", WARN if missing_optional else OK,
                   f"{inter.name}: {len(df):,} rows, columns {' '.join(header)}"
                   + (f" (no {', '.join(missing_optional)})" if missing_optional else ""))
        try:
            n_users, n_items = check_interactions(inter, df)
        except DatasetError as e:
            report.add("ids", FAIL, str(e))
            df = None
    if df is None:
        for m, f in modalities.items():
            report.add(f, SKIP, "needs a valid interaction file")
        return report

    report.add("ids", OK, f"users 0..{n_users - 1} ({n_users:,}), items 0..{n_items - 1} ({n_items:,}), "
                          f"no duplicate pairs, every user has a training interaction")
    counts = np.bincount(df["x_label"].to_numpy(), minlength=3)
    report.stats = {"users": n_users, "items": n_items, "interactions": len(df),
                    "train": int(counts[0]), "valid": int(counts[1]), "test": int(counts[2])}
    rule_ok, rule_detail = check_split_rule(df)
    split_status = OK if rule_ok else (FAIL if expected is not None else WARN)
    report.add("split", split_status, f"train/valid/test {_n(counts[0])}/{_n(counts[1])}/{_n(counts[2])}; "
                                      f"{rule_detail}")

    for modality, filename in modalities.items():
        status, detail, info = check_feature_file(root / filename, n_items, feature_dims.get(modality))
        if status == OK and modality not in feature_dims and name in PAPER_TABLE1:
            status, detail = WARN, f"{detail}; no expected width for modality '{modality}'"
        report.add(filename, status, detail)
        report.stats[f"{modality}_feat"] = info

    _check_mapping(report, root, "u_id_mapping.csv", n_users)
    _check_mapping(report, root, "i_id_mapping.csv", n_items)

    if expected is None:
        report.add("statistics", SKIP, f"no reference statistics for '{name}' "
                                       f"({n_users:,} users, {n_items:,} items, {len(df):,} interactions)")
    else:
        got = DatasetStats(n_users, n_items, len(df))
        parts, same = [], True
        for key in ("users", "items", "interactions"):
            g, w = getattr(got, key), getattr(expected, key)
            same &= g == w
            parts.append(f"{key} {g:,}" + (" =" if g == w else " != expected") + f" {w:,}")
        report.add("Table 1", OK if same else stats_status, "; ".join(parts))
    return report
