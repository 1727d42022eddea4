"""Synthetic datasets: exact sizes, valid MMRec files, heavy tails, determinism, structure."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from src.data.formats import load_dataset
from src.data.prepare.common import split_labels
from src.data.prepare.synthetic import PRESETS, build_preset, generate, zipf_degrees

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic_tiny"
    stats = build_preset(out, "tiny", seed=0)
    return out, stats, pd.read_csv(out / "synthetic_tiny.inter", sep="\t")


def test_presets_copy_the_paper_table():
    sizes = {k: (v["n_users"], v["n_items"], v["n_interactions"]) for k, v in PRESETS.items()}
    assert sizes["baby_scale"] == (19_445, 7_050, 160_792)
    assert sizes["sports_scale"] == (35_598, 18_357, 296_337)
    assert sizes["clothing_scale"] == (39_387, 23_033, 278_677)
    for name in ("baby_scale", "sports_scale", "clothing_scale"):
        assert PRESETS[name]["feature_dims"] == {"image": 4096, "text": 384}


def test_tiny_exact_sizes_and_dense_ids(tiny):
    out, stats, df = tiny
    assert list(df.columns) == ["userID", "itemID", "x_label"]
    assert len(df) == TINY["n_interactions"] == stats["n_interactions"]
    assert np.array_equal(np.unique(df["userID"]), np.arange(TINY["n_users"]))
    assert np.array_equal(np.unique(df["itemID"]), np.arange(TINY["n_items"]))
    assert not df.duplicated(["userID", "itemID"]).any()
    assert (out / ".complete").is_file()
    assert json.loads((out / "stats.json").read_text()) == stats


def test_tiny_degrees_are_heavy_tailed(tiny):
    _, _, df = tiny
    user_deg = df["userID"].value_counts().to_numpy()
    item_deg = np.sort(df["itemID"].value_counts().to_numpy())[::-1]
    assert user_deg.min() >= 5 and item_deg.min() >= 5
    assert item_deg.max() >= 4 * np.median(item_deg)
    assert user_deg.max() >= 4 * np.median(user_deg)
    top_decile_share = item_deg[: len(item_deg) // 10].sum() / item_deg.sum()
    assert top_decile_share >= 0.3  # uniform degrees would give 0.1


def test_tiny_split_follows_the_mmrec_rule(tiny):
    out, _, df = tiny
    assert set(df["x_label"]) == {0, 1, 2}
    users = df["userID"].to_numpy()
    assert (np.diff(users) >= 0).all()  # grouped by user, as MMRec writes it
    assert np.array_equal(df["x_label"].to_numpy(), split_labels(np.bincount(users)))
    data = load_dataset(out, "synthetic_tiny", {"image": "image_feat.npy", "text": "text_feat.npy"})
    assert len(np.unique(data.train.users)) == TINY["n_users"]  # every user has training rows


def test_tiny_features_show_the_item_clusters(tiny):
    out, _, _ = tiny
    clusters = np.load(out / "item_cluster.npy")
    for modality, dim in TINY["feature_dims"].items():
        feat = np.load(out / f"{modality}_feat.npy")
        assert feat.dtype == np.float32 and feat.shape == (TINY["n_items"], dim)
        unit = feat / np.linalg.norm(feat, axis=1, keepdims=True)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        neighbours = np.argsort(-sim, axis=1)[:, :5]
        same = (clusters[neighbours] == clusters[:, None]).mean()
        chance = (np.bincount(clusters) / len(clusters)) @ (np.bincount(clusters) / len(clusters))
        assert same >= 0.9 > chance + 0.3


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_preset(tmp_path / "a", "tiny", seed=3)
    b = build_preset(tmp_path / "b", "tiny", seed=3)
    c = build_preset(tmp_path / "c", "tiny", seed=4)
    assert a["x_label_counts"] == b["x_label_counts"]
    for name in ("image_feat.npy", "text_feat.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert (tmp_path / "a/a.inter").read_bytes() == (tmp_path / "b/b.inter").read_bytes()
    assert (tmp_path / "a/a.inter").read_bytes() != (tmp_path / "c/c.inter").read_bytes()


def test_interactions_do_not_depend_on_the_feature_set(tmp_path):
    sizes = dict(n_users=60, n_items=40, n_interactions=600)
    generate(tmp_path / "one", feature_dims={"text": 8}, **sizes)
    generate(tmp_path / "two", feature_dims={"image": 16, "text": 8}, **sizes)
    assert (tmp_path / "one/one.inter").read_bytes() == (tmp_path / "two/two.inter").read_bytes()
    assert (tmp_path / "one/text_feat.npy").read_bytes() == (tmp_path / "two/text_feat.npy").read_bytes()


@pytest.mark.parametrize("n,total,minimum,cap,alpha", [(50, 1000, 5, 60, 1.0), (1000, 5000, 1, 10, 0.5),
                                                        (7, 35, 5, 5, 2.0)])
def test_zipf_degrees_bounds_and_total(n, total, minimum, cap, alpha):
    deg = zipf_degrees(np.random.default_rng(0), n, total, minimum, cap, alpha)
    assert len(deg) == n and deg.sum() == total
    assert deg.min() >= minimum and deg.max() <= cap


def test_impossible_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="summing to"):
        generate(tmp_path / "x", n_users=100, n_items=50, n_interactions=300, feature_dims={})
    with pytest.raises(ValueError, match="min_user_degree"):
        generate(tmp_path / "x", n_users=10, n_items=10, n_interactions=50, feature_dims={}, min_user_degree=2)
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        build_preset(tmp_path / "x", "huge")
    assert not (tmp_path / "x").exists()
