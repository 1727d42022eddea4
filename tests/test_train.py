"""The training harness end to end on ml100k: outputs, protocol, reproducibility."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from src.train import train
from src.utils.outputs import read_topk
from tests.helpers import ROOT, naive_metrics, train_config

CONTRACT_KEYS = {"best_epoch", "val", "test", "epochs", "train_seconds", "seconds_per_epoch"}
METRIC_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)}


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory, ml100k_dir):
    out = tmp_path_factory.mktemp("mf")
    cfg = train_config(out, ["model=mf", "trainer.max_epochs=4", "seed=3"])
    train(cfg)
    return out


def test_run_outputs_follow_the_contract(mf_run):
    m = json.loads((mf_run / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(m)
    assert set(m["val"]) == METRIC_KEYS and set(m["test"]) == METRIC_KEYS
    assert m["epochs"] == 4 and 0 <= m["best_epoch"] < 4
    assert m["seconds_per_epoch"] == pytest.approx(m["train_seconds"] / 4)
    assert (mf_run / "checkpoints" / "best.ckpt").is_file() and (mf_run / "checkpoints" / "last.ckpt").is_file()
    assert (mf_run / "csv" / "metrics.csv").is_file()
    logged = pd.read_csv(mf_run / "csv" / "metrics.csv")
    assert {"train/loss", "train/loss_bpr", "train/loss_reg", "val/recall@20"} <= set(logged.columns)


def test_topk_recomputes_the_test_metrics(mf_run, ml100k_dir):
    """An independent recomputation from topk.tsv and the .inter file gives metrics.json."""
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    test = inter[inter.x_label == 2]
    seen = inter[inter.x_label < 2]
    relevant = test.groupby("userID")["itemID"].apply(set).to_dict()
    masked = seen.groupby("userID")["itemID"].apply(set).to_dict()
    topk = read_topk(mf_run / "topk.tsv")
    assert set(topk) == set(relevant)  # every test user, nobody else
    for user, items in topk.items():
        assert len(items) == 50 and len(set(items)) == 50
        assert not masked.get(user, set()) & set(items)  # training and validation items masked
    reported = json.loads((mf_run / "metrics.json").read_text())["test"]
    for k in (5, 10, 20, 50):
        for name, value in naive_metrics(topk, relevant, k).items():
            assert reported[name] == pytest.approx(value, abs=1e-9), name


def test_same_seed_same_metrics(mf_run, tmp_path):
    cfg = train_config(tmp_path, ["model=mf", "trainer.max_epochs=4", "seed=3"])
    train(cfg)
    a = json.loads((mf_run / "metrics.json").read_text())
    b = json.loads((tmp_path / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["best_epoch"] == b["best_epoch"]
    assert (mf_run / "topk.tsv").read_text() == (tmp_path / "topk.tsv").read_text()


def test_trained_models_beat_random(mf_run, ml100k_dir):
    m = json.loads((mf_run / "metrics.json").read_text())
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    # expected recall@20 of a uniform random ranking: 20 / (unmasked items per user) on average
    n_items = inter.itemID.nunique()
    seen = inter[inter.x_label < 2].groupby("userID").size()
    random_recall = float(np.mean(20 / (n_items - seen)))
    assert m["test"]["recall@20"] > 3 * random_recall


def test_pop_from_the_command_line(tmp_path, ml100k_dir):
    """`python src/train.py model=pop hydra.run.dir=X` writes its outputs into X."""
    run = subprocess.run([sys.executable, "src/train.py", "model=pop", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["epochs"] == 0 and m["model"] == "pop" and m["dataset"] == "ml100k"
    # most-popular: every user's list is the popularity order minus their own items
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    counts = np.bincount(inter[inter.x_label == 0].itemID, minlength=inter.itemID.max() + 1)
    topk = read_topk(tmp_path / "topk.tsv")
    seen = inter[inter.x_label < 2].groupby("userID")["itemID"].apply(set).to_dict()
    user = next(iter(topk))
    popular = [i for i in np.argsort(-counts, kind="stable") if i not in seen[user]][:50]
    assert [counts[i] for i in topk[user]] == [counts[i] for i in popular]  # same counts (ties may reorder)
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def test_small_catalogue_and_exhausted_users(tmp_path):
    """Fewer than 50 items, and users with fewer unmasked items than the list length: the
    missing slots are no recommendation (never a masked item) and the metrics stay exact."""
    from src.data.prepare.synthetic import generate
    data_dir = tmp_path / "data"
    generate(data_dir / "small", n_users=40, n_items=30, n_interactions=600,
             feature_dims={"image": 8, "text": 4}, seed=0)
    out = tmp_path / "run"
    cfg = train_config(out, ["model=pop", "dataset=synthetic", "dataset.name=small",
                             f"paths.data_dir={data_dir}"])
    cfg.paths.data_dir = str(data_dir)
    train(cfg)
    inter = pd.read_csv(data_dir / "small" / "small.inter", sep="\t")
    test = inter[inter.x_label == 2].groupby("userID")["itemID"].apply(set).to_dict()
    seen = inter[inter.x_label < 2].groupby("userID")["itemID"].apply(set).to_dict()
    topk = read_topk(out / "topk.tsv")
    for user, items in topk.items():
        assert len(items) == 30 - len(seen[user]) and not set(items) & seen[user]
    reported = json.loads((out / "metrics.json").read_text())["test"]
    for k in (5, 10, 20, 50):
        for name, value in naive_metrics(topk, test, k).items():
            assert reported[name] == pytest.approx(value, abs=1e-9), name
