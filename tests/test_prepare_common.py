"""The shared builder helpers against naive re-implementations and hand-computed values."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from src.data.prepare.common import (COMPLETE_MARKER, atomic_dataset_dir, kcore_filter, mmrec_split,
                                     remap_ids, split_labels, write_inter)


def random_interactions(seed: int, n_rows: int = 3000, n_users: int = 120, n_items: int = 200) -> pd.DataFrame:
    """Skewed random (user, item, rating, timestamp) rows without duplicate pairs."""
    rng = np.random.default_rng(seed)
    users = (rng.pareto(1.5, n_rows) * 10).astype(int) % n_users
    items = (rng.pareto(1.2, n_rows) * 15).astype(int) % n_items
    df = pd.DataFrame({"userID": users, "itemID": items}).drop_duplicates()
    df["rating"] = rng.integers(1, 6, len(df)).astype(float)
    df["timestamp"] = rng.integers(0, 50, len(df))  # many ties, so the item tie-break matters
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


# ----------------------------------------------------------------------------- k-core
def naive_kcore(df: pd.DataFrame, k: int) -> tuple[set, int]:
    rows = {idx: (u, i) for idx, u, i in zip(df.index, df["userID"], df["itemID"])}
    rounds = 0
    while True:
        ucount = Counter(u for u, _ in rows.values())
        icount = Counter(i for _, i in rows.values())
        drop = [idx for idx, (u, i) in rows.items() if ucount[u] < k or icount[i] < k]
        if not drop:
            return set(rows), rounds
        for idx in drop:
            del rows[idx]
        rounds += 1


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 5), (3, 8)])
def test_kcore_matches_naive_loop(seed, k):
    df = random_interactions(seed)
    out, rounds = kcore_filter(df, "userID", "itemID", k=k)
    expected_rows, expected_rounds = naive_kcore(df, k)
    assert set(out.index) == expected_rows
    assert rounds == expected_rounds
    if len(out):
        assert out["userID"].value_counts().min() >= k and out["itemID"].value_counts().min() >= k


def test_kcore_drops_users_and_items_at_once_by_hand():
    # k=2. Round 1 drops item 9 (one row; user 0 still had 2 rows when counted); round 2
    # drops user 0 (now 1 row; item 2 still had 2); round 3 drops item 2 (now only user 3's);
    # round 4 drops user 3 (now 1 row); users 1, 2 and items 1, 3 keep 2 rows each.
    df = pd.DataFrame({"userID": [0, 0, 1, 1, 2, 2, 3, 3],
                       "itemID": [9, 2, 1, 3, 1, 3, 2, 1]})
    out, rounds = kcore_filter(df, "userID", "itemID", k=2)
    assert sorted(zip(out["userID"], out["itemID"])) == [(1, 1), (1, 3), (2, 1), (2, 3)]
    assert rounds == 4


# ----------------------------------------------------------------------------- remap
def test_remap_ids_dense_in_ascending_order():
    df = pd.DataFrame({"user_id": [30, 7, 30, 1000, 7], "x": [1, 2, 3, 4, 5]})
    out, mapping = remap_ids(df, "user_id", "userID")
    assert out["userID"].tolist() == [1, 0, 1, 2, 0]
    assert list(out.columns) == ["userID", "x"]
    assert mapping.to_dict("list") == {"user_id": [7, 30, 1000], "userID": [0, 1, 2]}
    # the mapping takes the new ids back to the original ones
    back = out.merge(mapping, on="userID")["user_id"]
    assert sorted(back) == sorted(df["user_id"])


# ----------------------------------------------------------------------------- split
def notebook_split(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """MMRec's preprocessing/1splitting.ipynb, re-typed with the dataset README's order
    (canonical sort, global seed, stable user sort) and a per-user Python loop."""
    df = df.sort_values(["userID", "timestamp", "itemID"], kind="stable").reset_index(drop=True)
    np.random.seed(seed)
    df = df.sample(frac=1).reset_index(drop=True)
    df = df.sort_values(by=["userID"], kind="stable")
    u_i_dict = {u: list(g) for u, g in df.groupby("userID")["itemID"]}
    new_label = []
    for u in sorted(u_i_dict):
        n_items = len(u_i_dict[u])
        if n_items < 10:
            tmp_ls = [0] * (n_items - 2) + [1] + [2]
        else:
            val_test_len = int(n_items * 0.2)
            train_len = n_items - val_test_len
            val_len = val_test_len // 2
            test_len = val_test_len - val_len
            tmp_ls = [0] * train_len + [1] * val_len + [2] * test_len
        new_label.extend(tmp_ls)
    df["x_label"] = new_label
    return df.reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 7, 2026])
def test_split_matches_notebook_procedure(seed):
    df, _ = kcore_filter(random_interactions(seed, n_rows=6000), "userID", "itemID", k=3)
    sizes = df["userID"].value_counts()
    assert (sizes < 10).any() and (sizes >= 10).any()  # both branches of the rule are exercised
    expected = notebook_split(df, seed)
    got = mmrec_split(df.sample(frac=1, random_state=99), seed)  # input order must not matter
    pd.testing.assert_frame_equal(got, expected)


def test_split_leaves_global_numpy_state_alone():
    df, _ = kcore_filter(random_interactions(0), "userID", "itemID", k=3)
    np.random.seed(5)
    before = np.random.random()
    np.random.seed(5)
    mmrec_split(df, 2026)
    assert np.random.random() == before


def test_split_labels_by_hand():
    # n=3: 1/1/1; n=9: 7/1/1; n=10: v=2 -> 8/1/1; n=11: v=int(2.2)=2 -> 9/1/1;
    # n=15: v=3 -> 12/1/2; n=23: v=int(4.6)=4 -> 19/2/2
    sizes = [3, 9, 10, 11, 15, 23]
    labels = split_labels(np.array(sizes))
    blocks = np.split(labels, np.cumsum(sizes)[:-1])
    expected = [(1, 1, 1), (7, 1, 1), (8, 1, 1), (9, 1, 1), (12, 1, 2), (19, 2, 2)]
    for block, (tr, va, te) in zip(blocks, expected):
        assert block.tolist() == [0] * tr + [1] * va + [2] * te


def test_split_rejects_users_with_fewer_than_three_rows():
    with pytest.raises(ValueError, match="at least 3"):
        split_labels(np.array([5, 2, 7]))


# ----------------------------------------------------------------------------- writing
def test_write_inter_exact_format(tmp_path):
    df = pd.DataFrame({"itemID": [98, 113], "userID": [0, 0], "rating": [3, 4.5],
                       "timestamp": [875072547.0, 875072173.0], "x_label": [0, 2], "extra": [1, 2]})
    path = tmp_path / "toy.inter"
    write_inter(df, path)
    assert path.read_text() == ("userID\titemID\trating\ttimestamp\tx_label\n"
                                "0\t98\t3.0\t875072547\t0\n"
                                "0\t113\t4.5\t875072173\t2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.inter"]  # no temp file left


def test_write_inter_without_optional_columns(tmp_path):
    path = tmp_path / "ids.inter"
    write_inter(pd.DataFrame({"userID": [1], "itemID": [2], "x_label": [1]}), path)
    assert path.read_text() == "userID\titemID\tx_label\n1\t2\t1\n"


def test_write_inter_requires_ids_and_labels(tmp_path):
    with pytest.raises(ValueError, match="x_label"):
        write_inter(pd.DataFrame({"userID": [1], "itemID": [2]}), tmp_path / "bad.inter")


def test_atomic_dir_success_replaces_old_dataset(tmp_path):
    final = tmp_path / "ds"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_dataset_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp != final
        (tmp / "new.txt").write_text("new")
        assert (final / "old.txt").exists()  # untouched until the block succeeds
    assert sorted(p.name for p in final.iterdir()) == sorted([COMPLETE_MARKER, "new.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # nothing left beside it


@pytest.mark.parametrize("existed", [False, True])
def test_atomic_dir_failure_leaves_nothing(tmp_path, existed):
    final = tmp_path / "ds"
    if existed:
        final.mkdir()
        (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dataset_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    if existed:
        assert [p.name for p in final.iterdir()] == ["old.txt"]
        assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    else:
        assert list(tmp_path.iterdir()) == []
