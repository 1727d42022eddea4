"""The RQ4 corruption transform (src/data/noise.py) and its experiment config."""
from __future__ import annotations

import json

import hydra
import numpy as np
import pytest

from src.data.datamodule import RecDataModule
from src.data.formats import Interactions, RecData
from src.data.noise import ModalityNoise
from tests.conftest import write_toy_dataset
from tests.helpers import train_config


def make_data(n_items: int = 200, seed: int = 0) -> RecData:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(10), 3)
    items = rng.integers(0, n_items, size=len(users))
    split = Interactions(users, items)
    return RecData(name="toy", n_users=10, n_items=n_items, train=split, valid=split, test=split,
                   features={"image": rng.normal(size=(n_items, 16)).astype(np.float32),
                             "text": rng.normal(3.0, 2.0, size=(n_items, 8)).astype(np.float32)},
                   fingerprint="abcdef0123456789")


@pytest.mark.parametrize("kind", ["gaussian", "shuffle"])
@pytest.mark.parametrize("fraction", [0.1, 0.37, 1.0])
def test_corrupts_exactly_the_requested_rows_of_one_modality(kind, fraction):
    data = make_data()
    noise = ModalityNoise("text", fraction, kind=kind, seed=3)
    out = noise(data)
    changed = np.flatnonzero(np.any(out.features["text"] != data.features["text"], axis=1))
    assert len(changed) == round(fraction * data.n_items)
    assert changed.tolist() == noise.record["rows"]
    assert noise.record["n_corrupted"] == noise.record["n_rows_changed"] == len(changed)
    # the other modality and the interactions are the very same objects, untouched
    assert out.features["image"] is data.features["image"]
    assert out.train is data.train and out.valid is data.valid and out.test is data.test
    assert out.features["text"].dtype == np.float32 and out.features["text"].shape == data.features["text"].shape


def test_shuffle_moves_rows_among_the_chosen_items_without_fixed_points():
    data = make_data()
    noise = ModalityNoise("text", 0.5, kind="shuffle", seed=1)
    out = noise(data)
    rows = np.array(noise.record["rows"])
    before, after = data.features["text"][rows], out.features["text"][rows]
    # the same multiset of rows, and no row kept its own features
    assert sorted(map(tuple, before.tolist())) == sorted(map(tuple, after.tolist()))
    assert not np.any(np.all(before == after, axis=1))


def test_gaussian_noise_has_the_requested_scale():
    data = make_data(n_items=4000)
    out = ModalityNoise("text", 1.0, kind="gaussian", scale=0.5, seed=0)(data)
    noise = out.features["text"].astype(np.float64) - data.features["text"]
    expected_std = 0.5 * data.features["text"].std(axis=0)  # per-dimension std of the clean table
    assert noise.mean(axis=0) == pytest.approx(np.zeros(8), abs=0.1)  # 6 standard errors
    assert noise.std(axis=0) == pytest.approx(expected_std, rel=0.05)


def test_deterministic_and_seeded():
    data = make_data()
    a = ModalityNoise("text", 0.3, seed=7)(data)
    b = ModalityNoise("text", 0.3, seed=7)(data)
    c = ModalityNoise("text", 0.3, seed=8)(data)
    assert np.array_equal(a.features["text"], b.features["text"]) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.features["text"], c.features["text"])


def test_fingerprint_changes_with_every_parameter_but_not_for_a_clean_table():
    data = make_data()
    prints = {ModalityNoise("text", 0.3, seed=0)(data).fingerprint,
              ModalityNoise("text", 0.3, seed=1)(data).fingerprint,
              ModalityNoise("text", 0.4, seed=0)(data).fingerprint,
              ModalityNoise("text", 0.3, scale=2.0, seed=0)(data).fingerprint,
              ModalityNoise("text", 0.3, kind="shuffle", seed=0)(data).fingerprint,
              ModalityNoise("image", 0.3, seed=0)(data).fingerprint}
    assert len(prints) == 6 and data.fingerprint not in prints
    assert ModalityNoise("text", 0.0)(data).fingerprint == data.fingerprint
    assert ModalityNoise("text", 0.5, scale=0.0)(data).fingerprint == data.fingerprint


def test_bad_parameters_are_refused():
    with pytest.raises(KeyError, match="no modality 'audio'"):
        ModalityNoise("audio", 0.5)(make_data())
    with pytest.raises(ValueError, match="fraction"):
        ModalityNoise("text", 1.5)
    with pytest.raises(ValueError, match="kind"):
        ModalityNoise("text", 0.5, kind="blur")


def test_datamodule_applies_it_and_keys_graphs_by_the_new_fingerprint(tmp_path):
    root = tmp_path / "toy"
    rows = write_toy_dataset(root, seed=0)
    n_items = max(i for _, i, _ in rows) + 1
    record = tmp_path / "noise.json"
    kwargs = dict(name="toy", data_dir=str(tmp_path), modalities={"image": "image_feat.npy", "text": "text_feat.npy"})
    clean = RecDataModule(**kwargs)
    clean.setup()
    noisy = RecDataModule(**kwargs, transform=ModalityNoise("image", 0.5, seed=0, record_path=str(record)))
    noisy.setup()
    assert noisy.data.fingerprint != clean.data.fingerprint
    assert noisy.graphs.cache.fingerprint == noisy.data.fingerprint  # graphs are keyed by the noisy data
    assert clean.graphs.cache.fingerprint == clean.data.fingerprint
    assert np.array_equal(noisy.data.features["text"], clean.data.features["text"])
    assert json.loads(record.read_text())["n_corrupted"] == round(0.5 * n_items)


def test_noise_experiment_config_builds_the_transform(tmp_path):
    cfg = train_config(tmp_path, ["experiment=noise", "model=lightgcn", "noise.fraction=0.25", "noise.kind=shuffle"])
    dm = hydra.utils.instantiate(cfg.dataset)
    assert isinstance(dm.transform, ModalityNoise)
    assert (dm.transform.modality, dm.transform.fraction, dm.transform.kind) == ("text", 0.25, "shuffle")
    assert dm.transform.record_path == f"{tmp_path}/noise.json"
