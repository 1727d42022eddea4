"""`baby_ids` builder: copies the shared Baby file only when its checksum matches."""
from __future__ import annotations

import hashlib

import pytest

from src.data.formats import DatasetError, load_dataset
from src.data.prepare.shared_copy import build
from tests.conftest import SHARED, toy_rows, write_inter


def _source(tmp_path, corrupt=False):
    src = tmp_path / "src"
    src.mkdir()
    f = write_inter(src / "baby.inter", toy_rows())
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    if corrupt:
        f.write_text(f.read_text() + "0\t0\t1.0\t0\t0\n")
    (src / "SHA256SUMS").write_text(f"{digest}  baby.inter\n")
    return src


def test_copies_and_verifies(tmp_path):
    out = tmp_path / "data" / "baby_ids"
    build(out, _source(tmp_path), "baby.inter")
    assert (out / ".complete").is_file()
    data = load_dataset(out, "baby_ids")
    assert data.n_users == 6 and not data.features


def test_checksum_mismatch_leaves_nothing(tmp_path):
    out = tmp_path / "data" / "baby_ids"
    with pytest.raises(DatasetError, match="sha256 is .*, expected"):
        build(out, _source(tmp_path, corrupt=True), "baby.inter")
    assert not out.exists()
    leftovers = list((tmp_path / "data").iterdir()) if (tmp_path / "data").exists() else []
    assert leftovers == []  # no temporary folder left behind either


def test_missing_source(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        build(tmp_path / "out", tmp_path / "nowhere", "baby.inter")


@pytest.mark.skipif(not (SHARED / "datasets/baby/baby.inter").is_file(), reason="no shared Baby file")
def test_real_baby_file(tmp_path):
    out = tmp_path / "baby_ids"
    build(out, SHARED / "datasets/baby", "baby.inter")
    data = load_dataset(out, "baby_ids")
    # the paper's Table 1 for Baby
    assert (data.n_users, data.n_items) == (19445, 7050)
    assert len(data.train) + len(data.valid) + len(data.test) == 160792
