"""src/visualize.py on a tiny real run: t-SNE panels and the σ-versus-error table."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from src.models.mf import MF
from src.utils.outputs import read_topk
from src.visualize import main as visualize_main
from src.visualize import run_sigma_error, run_tsne
from tests.helpers import ROOT


def _train(run_dir, model):
    run = subprocess.run([sys.executable, "src/train.py", f"model={model}", "trainer.max_epochs=2",
                          "+trainer.limit_train_batches=5", "seed=5", f"hydra.run.dir={run_dir}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ml100k_dir):
    base = tmp_path_factory.mktemp("runs")
    return {"mf": _train(base / "mf", "mf"), "pop": _train(base / "pop", "pop")}


def test_tsne_panels_from_checkpoints(runs, tmp_path):
    out = run_tsne([runs["mf"], runs["pop"]], tmp_path / "tsne.png", n_users=60, seed=0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    coords = pd.read_csv(tmp_path / "tsne.csv")
    assert len(coords) == 60 and coords["user"].nunique() == 60  # pop has no embeddings: no points
    assert np.isfinite(coords[["x", "y"]].to_numpy()).all()


def test_tsne_uses_the_best_checkpoint(runs):
    """The loaded MF embeddings are the ones stored in checkpoints/best.ckpt."""
    from src.reporting.analysis import user_embeddings
    from src.reporting.runs import load_run
    run = load_run(runs["mf"])
    state = torch.load(runs["mf"] / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert np.array_equal(user_embeddings(run.net), state["net.user_embedding.weight"].double().numpy())


def test_sigma_error_table_and_correlations(runs, tmp_path, monkeypatch, ml100k_dir):
    inter = pd.read_csv(ml100k_dir / "ml100k.inter", sep="\t")
    n_users = inter.userID.max() + 1
    degree = np.bincount(inter[inter.x_label == 0].userID, minlength=n_users).astype(np.float64)
    noise = np.random.default_rng(0).normal(size=n_users)
    # a stand-in for SPUMR's per-user σ: known values, so the table can be checked
    monkeypatch.setattr(MF, "user_uncertainty", lambda self: {"text": torch.tensor(degree),
                                                              "kg": torch.tensor(noise)}, raising=False)
    per_user, corr, png = run_sigma_error(runs["mf"], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(per_user)

    # per-user NDCG@20 recomputed loop by loop from topk.tsv and the test split
    topk = read_topk(runs["mf"] / "topk.tsv")
    relevant = inter[inter.x_label == 2].groupby("userID")["itemID"].apply(set).to_dict()
    assert sorted(table["user"]) == sorted(relevant)
    for _, r in table.sample(50, random_state=0).iterrows():
        rel, ranked = relevant[int(r.user)], topk[int(r.user)][:20]
        dcg = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked) if item in rel)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), 20)))
        assert r["ndcg@20"] == pytest.approx(dcg / idcg, abs=1e-12)
        assert r["error"] == pytest.approx(1 - dcg / idcg, abs=1e-12)
        assert r["sigma_text"] == degree[int(r.user)] and r["n_train"] == degree[int(r.user)]

    c = pd.read_csv(corr).set_index("modality")
    assert c.loc["text", "spearman_rho"] == pytest.approx(table["sigma_text"].corr(table["error"], method="spearman"))
    assert c.loc["kg", "pearson_r"] == pytest.approx(np.corrcoef(table["sigma_kg"], table["error"])[0, 1])
    assert (c["n_users"] == len(relevant)).all()


def test_sigma_error_refuses_models_without_sigma(runs, tmp_path):
    assert visualize_main(["sigma-error", str(runs["mf"]), "--out-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "sigma_error.csv").exists()
