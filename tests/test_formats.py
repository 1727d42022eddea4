"""Loading and validation of MMRec-format datasets: every bad input gets one clear error."""
from __future__ import annotations

import numpy as np
import pytest

from src.data.formats import DatasetError, load_dataset
from tests.conftest import toy_rows, write_inter

MODS = {"image": "image_feat.npy", "text": "text_feat.npy"}


def test_loads_valid_dataset(toy_dataset):
    root, rows = toy_dataset
    data = load_dataset(root, "toy", MODS)
    assert data.n_users == 6 and data.n_items == max(i for _, i, _ in rows) + 1
    assert len(data.train) + len(data.valid) + len(data.test) == len(rows)
    expected_train = sorted((u, i) for u, i, x in rows if x == 0)
    assert sorted(zip(data.train.users.tolist(), data.train.items.tolist())) == expected_train
    assert data.features["image"].dtype == np.float32 and data.features["image"].shape[0] == data.n_items
    m = data.train_matrix()
    assert m.shape == (data.n_users, data.n_items) and m.nnz == len(expected_train)
    # the fingerprint follows the content of the files
    again = load_dataset(root, "toy", MODS)
    assert again.fingerprint == data.fingerprint
    np.save(root / "text_feat.npy", np.zeros_like(data.features["text"]))
    assert load_dataset(root, "toy", MODS).fingerprint != data.fingerprint


def _expect(root, match, name="toy", mods=MODS):
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(root, name, mods)
    return str(info.value)


def test_missing_inter_file(tmp_path):
    msg = _expect(tmp_path, "interaction file not found")
    assert str(tmp_path / "toy.inter") in msg


def test_missing_feature_file(toy_dataset):
    root, _ = toy_dataset
    (root / "text_feat.npy").unlink()
    assert "text_feat.npy: feature file not found" in _expect(root, "feature file not found")


def test_missing_column(tmp_path):
    (tmp_path / "toy.inter").write_text("userID\titemID\trating\n0\t0\t1.0\n")
    assert "x_label" in _expect(tmp_path, r"missing column\(s\) \['x_label'\]", mods={})


@pytest.mark.parametrize("bad,col", [("abc", "userID"), ("1.5", "itemID"), ("", "userID")])
def test_non_integer_ids(tmp_path, bad, col):
    rows = toy_rows()
    write_inter(tmp_path / "toy.inter", rows)
    lines = (tmp_path / "toy.inter").read_text().splitlines()
    fields = lines[3].split("\t")
    fields[0 if col == "userID" else 1] = bad
    lines[3] = "\t".join(fields)
    (tmp_path / "toy.inter").write_text("\n".join(lines) + "\n")
    msg = _expect(tmp_path, f"line 4: {col} is", mods={})
    assert "non-negative integer" in msg


def test_negative_id(tmp_path):
    rows = toy_rows()
    rows[4] = (rows[4][0], -3, rows[4][2])
    write_inter(tmp_path / "toy.inter", rows)
    _expect(tmp_path, r"line 6: itemID is -3; expected a non-negative integer", mods={})


def test_ids_not_dense(tmp_path):
    rows = [(u + (2 if u >= 3 else 0), i, x) for u, i, x in toy_rows()]  # users 3, 4 never occur
    write_inter(tmp_path / "toy.inter", rows)
    _expect(tmp_path, r"user ids are not dense: 2 of 0..7 never occur \(first missing: 3\)", mods={})


def test_bad_x_label(tmp_path):
    rows = toy_rows()
    rows[2] = (rows[2][0], rows[2][1], 3)
    write_inter(tmp_path / "toy.inter", rows)
    _expect(tmp_path, r"line 4: x_label is 3; expected 0 \(train\), 1 \(valid\) or 2 \(test\)", mods={})


def test_feature_row_count(toy_dataset):
    root, rows = toy_dataset
    n_items = max(i for _, i, _ in rows) + 1
    np.save(root / "image_feat.npy", np.zeros((n_items - 1, 6), np.float32))
    _expect(root, rf"image_feat.npy: has {n_items - 1} rows; expected one row per item \({n_items} items\)")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_feature_nan_inf(toy_dataset, value):
    root, _ = toy_dataset
    feats = np.load(root / "text_feat.npy")
    feats[3, 1] = value
    np.save(root / "text_feat.npy", feats)
    _expect(root, r"text_feat.npy: row 3 \(item 3\) holds NaN or inf")


def test_feature_wrong_shape_and_dtype(toy_dataset):
    root, rows = toy_dataset
    n_items = max(i for _, i, _ in rows) + 1
    np.save(root / "text_feat.npy", np.zeros(n_items, np.float32))
    _expect(root, r"text_feat.npy: has shape \(\d+,\); expected a 2-D")
    np.save(root / "text_feat.npy", np.zeros((n_items, 3), np.int64))
    _expect(root, "text_feat.npy: has dtype int64; expected float32")


def test_feature_not_npy(toy_dataset):
    root, _ = toy_dataset
    (root / "text_feat.npy").write_bytes(b"not numpy at all")
    _expect(root, "text_feat.npy: not a readable .npy array")


def test_user_without_training_interaction(tmp_path):
    rows = [(u, i, 1 if u == 2 and x == 0 else x) for u, i, x in toy_rows()]
    write_inter(tmp_path / "toy.inter", rows)
    _expect(tmp_path, r"user 2 has no training interaction \(x_label 0\)", mods={})


def test_duplicate_pair(tmp_path):
    rows = toy_rows()
    rows.append((rows[1][0], rows[1][1], 2))
    write_inter(tmp_path / "toy.inter", rows)
    msg = _expect(tmp_path, r"lines 3 and \d+: duplicate \(userID, itemID\) pair", mods={})
    assert f"({rows[1][0]}, {rows[1][1]})" in msg


def test_empty_file(tmp_path):
    (tmp_path / "toy.inter").write_text("")
    _expect(tmp_path, "cannot be read", mods={})
    (tmp_path / "toy.inter").write_text("userID\titemID\tx_label\n")
    _expect(tmp_path, "no interactions", mods={})
