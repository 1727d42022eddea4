"""src/data/verify.py: the report on good and broken dataset folders, and its command line."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.data.prepare.common import mmrec_split, write_inter
from src.data.verify import FAIL, OK, SKIP, WARN, DatasetStats, check_split_rule, verify_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "src" / "prepare_data.py"
# ../shared beside the repository; SHARED_DIR points elsewhere (e.g. from a git worktree)
SHARED_BABY = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared")) / "datasets" / "baby"
DIMS = {"image": 64, "text": 32}
MODALITIES = {"image": "image_feat.npy", "text": "text_feat.npy"}


def make_dataset(root: Path, name: str = "tiny", n_users: int = 30, n_items: int = 20, seed: int = 0) -> DatasetStats:
    """A valid MMRec folder: random interactions (every item used), MMRec's split, two modalities."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, size=rng.integers(4, 13), replace=False)}
    pairs |= {(i % n_users, i) for i in range(n_items)}  # every item occurs: dense ids
    users, items = map(np.array, zip(*sorted(pairs)))
    df = pd.DataFrame({"userID": users, "itemID": items, "rating": 5.0, "timestamp": np.arange(len(users))})
    df = mmrec_split(df, seed=1)
    root.mkdir(parents=True, exist_ok=True)
    write_inter(df, root / f"{name}.inter")
    for m, d in DIMS.items():
        np.save(root / MODALITIES[m], rng.normal(size=(n_items, d)).astype(np.float32))
    pd.DataFrame({"asin": [f"B{i:09d}" for i in range(n_items)], "itemID": range(n_items)}).to_csv(
        root / "i_id_mapping.csv", sep="\t", index=False)
    return DatasetStats(n_users, n_items, len(df))


def status(report, name: str) -> str:
    return next(c.status for c in report.checks if c.name == name)


def detail(report, name: str) -> str:
    return next(c.detail for c in report.checks if c.name == name)


@pytest.fixture
def good(tmp_path):
    stats = make_dataset(tmp_path / "tiny")
    return tmp_path / "tiny", stats


def run(root: Path, stats: DatasetStats | None, **kw):
    return verify_dataset(root, "tiny", MODALITIES, expected=stats, feature_dims=DIMS, **kw)


def test_good_folder_passes_every_check(good):
    root, stats = good
    report = run(root, stats)
    assert report.ok, str(report)
    assert [c.name for c in report.checks] == ["interactions", "ids", "split", "image_feat.npy", "text_feat.npy",
                                               "i_id_mapping.csv", "Table 1"]
    assert all(c.status == OK for c in report.checks)
    assert report.stats["users"] == stats.users and report.stats["interactions"] == stats.interactions
    text = str(report)
    assert "RESULT: OK" in text and f"{stats.interactions:,}" in text


def test_nan_wrong_width_and_dtype_are_reported_each(good):
    root, stats = good
    img = np.load(root / "image_feat.npy")
    np.save(root / "image_feat.npy", img[:, :-1])  # 63 wide
    txt = np.load(root / "text_feat.npy")
    txt[7, 3] = np.nan
    txt[9, 0] = np.inf
    np.save(root / "text_feat.npy", txt)
    report = run(root, stats)
    assert not report.ok
    assert status(report, "image_feat.npy") == FAIL and "width 63, expected 64" in detail(report, "image_feat.npy")
    assert status(report, "text_feat.npy") == FAIL and "2 row(s) hold NaN or inf (first: row 7)" in detail(
        report, "text_feat.npy")
    assert status(report, "split") == OK and status(report, "Table 1") == OK  # the rest still checked
    assert "RESULT: FAILED" in str(report)

    np.save(root / "text_feat.npy", np.zeros((stats.items, 32), dtype=np.int32))
    assert "dtype int32" in detail(run(root, stats), "text_feat.npy")
    np.save(root / "text_feat.npy", np.zeros((stats.items, 32)))  # float64: MMRec's image files are
    assert status(run(root, stats), "text_feat.npy") == OK
    np.save(root / "text_feat.npy", np.zeros((stats.items - 1, 32), dtype=np.float32))
    assert f"expected one per item ({stats.items})" in detail(run(root, stats), "text_feat.npy")
    (root / "text_feat.npy").unlink()
    assert "file not found" in detail(run(root, stats), "text_feat.npy")


def test_broken_interaction_file_fails_and_skips_features(good):
    root, stats = good
    inter = root / "tiny.inter"
    df = pd.read_csv(inter, sep="\t")
    df.drop(columns=["x_label"]).to_csv(inter, sep="\t", index=False)
    report = run(root, stats)
    assert status(report, "interactions") == FAIL and "x_label" in detail(report, "interactions")
    assert status(report, "image_feat.npy") == SKIP and status(report, "text_feat.npy") == SKIP

    bad = df.copy()
    bad.loc[3, "x_label"] = 3
    bad.to_csv(inter, sep="\t", index=False)
    assert "line 5: x_label is 3" in detail(run(root, stats), "interactions")

    gap = df.copy()
    gap.loc[gap["itemID"] == 4, "itemID"] = stats.items + 5  # item 4 never occurs
    gap.to_csv(inter, sep="\t", index=False)
    report = run(root, stats)
    assert status(report, "ids") == FAIL and "not dense" in detail(report, "ids")


def test_statistics_mismatch_fails_or_warns(good):
    root, stats = good
    wrong = DatasetStats(stats.users, stats.items + 1, stats.interactions)
    report = run(root, wrong)
    assert status(report, "Table 1") == FAIL and not report.ok
    assert f"items {stats.items:,} != expected {stats.items + 1:,}" in detail(report, "Table 1")
    assert f"users {stats.users:,} = {stats.users:,}" in detail(report, "Table 1")
    report = run(root, wrong, stats_status=WARN)
    assert status(report, "Table 1") == WARN and report.ok
    assert status(run(root, None), "statistics") == SKIP


def test_paper_name_uses_table1_and_paper_widths(tmp_path):
    make_dataset(tmp_path / "baby", name="baby")
    report = verify_dataset(tmp_path / "baby", "baby", MODALITIES)
    assert "users 30 != expected 19,445" in detail(report, "Table 1")
    assert "width 64, expected 4096" in detail(report, "image_feat.npy")
    assert "width 32, expected 384" in detail(report, "text_feat.npy")


def test_split_rule_violation(good):
    root, stats = good
    df = pd.read_csv(root / "tiny.inter", sep="\t")
    row = df.index[(df["userID"] == 0) & (df["x_label"] == 2)][0]
    df.loc[row, "x_label"] = 0
    df.to_csv(root / "tiny.inter", sep="\t", index=False)
    ok, why = check_split_rule(df)
    assert not ok and "user 0 has train/valid/test" in why
    assert status(run(root, stats), "split") == FAIL  # reference statistics known: MMRec's split expected
    assert status(run(root, None), "split") == WARN   # a custom dataset may split otherwise


def test_mapping_with_wrong_length_warns(good):
    root, stats = good
    pd.DataFrame({"asin": ["x"], "itemID": [0]}).to_csv(root / "i_id_mapping.csv", sep="\t", index=False)
    report = run(root, stats)
    assert status(report, "i_id_mapping.csv") == WARN and report.ok


@pytest.mark.skipif(not (SHARED_BABY / "baby.inter").is_file(), reason="shared Baby interactions not present")
def test_real_baby_interactions_match_table1_and_mmrec_split():
    report = verify_dataset(SHARED_BABY, "baby", {})
    assert report.ok, str(report)
    assert status(report, "Table 1") == OK and status(report, "split") == OK
    assert report.stats["train"] + report.stats["valid"] + report.stats["test"] == 160_792


# ---------------------------------------------------------------------------- command line
def load_script():
    spec = importlib.util.spec_from_file_location("prepare_data_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verify_only_in_process(tmp_path, capsys):
    make_dataset(tmp_path / "tiny")
    prepare = load_script().prepare
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "force": False, "verify_only": True,
                            "name": "tiny", "dataset": {"name": "ml100k", "modalities": {}}})
    assert prepare(cfg) == 0  # modalities found from the *_feat.npy files
    out = capsys.readouterr().out
    assert "image_feat.npy" in out and "text_feat.npy" in out and "RESULT: OK" in out
    np.save(tmp_path / "tiny" / "image_feat.npy", np.full((20, 64), np.nan, dtype=np.float32))
    assert prepare(cfg) == 1
    assert "RESULT: FAILED" in capsys.readouterr().out


def test_verify_only_command_line_exit_status(tmp_path):
    make_dataset(tmp_path / "baby", name="baby")
    cmd = [sys.executable, str(SCRIPT), "dataset=baby", "verify_only=true", f"paths.data_dir={tmp_path}"]
    run_ = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run_.returncode == 1, run_.stdout + run_.stderr  # a tiny folder is not the paper's Baby
    assert "FAIL  Table 1" in run_.stdout and "expected 19,445" in run_.stdout
