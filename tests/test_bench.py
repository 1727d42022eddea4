"""The benchmark's plumbing: CSV shape (never its figures), FLOP counting by hand, memory marks."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from src import bench
from src.models.lightgcn import LightGCN
from src.models.vbpr import VBPR
from src.utils.flops import count_flops, matmul_rate
from src.utils.memory import current_rss_mb, peak_rss_mb, reset_peak_rss
from tests.model_checks import tiny_data, tiny_store

REQUIRED = ["model", "scale", "device", "graph_build_s", "epoch_s", "epoch_floor_s", "eval_s",
            "eval_floor_s", "peak_mem_mb"]


def test_bench_writes_one_row_per_model_and_scale(tmp_path, capsys):
    out = tmp_path / "out"
    bench.main(["--scale", "tiny", "--models", "mf", "--epochs", "1", "--warmup", "0",
                "--eval-repeats", "1", "--flop-steps", "1", "--threads", "1",
                "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    with (out / "bench.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert set(REQUIRED) <= set(reader.fieldnames)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["scale"], row["device"], row["error"]) == ("mf", "tiny", "cpu", "")
    for key in REQUIRED[3:] + ["eval_ratio", "matmul_gflops", "load_start"]:
        float(row[key])  # present and numeric (values are machine-dependent: not checked)
    # MF's step has no matrix product (a gather and element-wise work): zero counted FLOPs, no ratio
    assert float(row["epoch_gflop"]) == 0.0 and row["epoch_ratio"] == ""
    assert int(row["n_users"]) == 200 and int(row["n_items"]) == 150
    printed = capsys.readouterr().out
    assert "mf" in printed and "epoch s" in printed and (out / "bench.txt").is_file()
    assert (out / "mf@tiny.log").is_file()  # the worker's stderr
    assert row["knn_recall"] == ""           # exact KNN: no recall to report


def test_bench_reports_faiss_recall(tmp_path):
    # a flat (exhaustive) faiss index finds the exact lists: recall 1 on every side and modality
    rows = bench.main(["--scale", "tiny", "--models", "spumr", "--epochs", "1", "--warmup", "0",
                       "--eval-repeats", "1", "--flop-steps", "1", "--threads", "1",
                       "--override", "dataset.knn.method=faiss", "--override", "+dataset.knn.index=flat",
                       "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert not rows[0].get("error"), rows[0].get("error")
    recall = dict(kv.split("=") for kv in rows[0]["knn_recall"].split())
    assert set(recall) == {"items/image", "items/text", "users/image", "users/text"}
    assert all(float(v) == 1.0 for v in recall.values())


def test_failed_worker_becomes_an_error_row(tmp_path):
    rows = bench.main(["--scale", "tiny", "--models", "no_such_model", "--epochs", "1", "--warmup", "0",
                       "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert len(rows) == 1 and rows[0]["error"].startswith("exit ")


def test_sparse_products_counted_as_2_nnz_d_forward_and_backward():
    data = tiny_data()
    store = tiny_store(data)
    model = LightGCN(data, store, embedding_dim=8, n_layers=3)
    nnz = store.user_item_adjacency()._nnz()
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    with count_flops() as c:
        sum(model.loss_terms(users, pos, neg).values()).backward()
    # 3 layers forward (A x) and 3 backward (A^T g), each 2 * nnz * d; the loss itself is element-wise
    assert c.sparse == 2 * 3 * 2 * nnz * 8
    assert c.dense == 0


def test_dense_products_counted_as_run_by_autograd():
    data = tiny_data({"image": 6, "text": 4})
    model = VBPR(data, None, embedding_dim=5)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3])
    with count_flops() as c:
        sum(model.loss_terms(users, pos, neg).values()).backward()
    n, f, d = 4, 10, 5  # the batch's distinct items 0, 1, 2, 3 (not the catalogue's 7)
    # content projection of the batch's distinct items (forward 2nfd) and its weight gradient
    # (2nfd); the raw features are a frozen buffer, so autograd runs no input-gradient product
    assert data.n_items > n
    assert c.dense == 4 * n * f * d
    assert c.sparse == 0


def test_counting_under_inference_mode_with_a_parameter_input():
    # FREEDOM's evaluation propagates its item table (a leaf parameter) through a SparseOp module
    # under inference_mode; torch's per-module tracker used to fail there (bench row "error")
    from src.models.layers import SparseOp
    adj = torch.sparse_coo_tensor(torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.ones(3), (3, 3))
    op, lin = SparseOp(adj), torch.nn.Linear(4, 2)
    x = torch.nn.Parameter(torch.randn(3, 4))
    with torch.inference_mode(), count_flops() as c:
        lin(op(x))
    assert c.sparse == 2 * 3 * 4          # 2 * nnz * d
    assert c.dense == 2 * 3 * 4 * 2       # the linear layer: 2 * rows * in * out


def test_counting_restores_the_sparse_operator():
    from src.models.layers import SparseOp
    original = SparseOp.apply_matrix
    with pytest.raises(RuntimeError):
        with count_flops():
            raise RuntimeError("boom")
    assert SparseOp.apply_matrix is original


def test_matmul_rate_and_memory_marks():
    assert matmul_rate("cpu", n=256, repeats=3) > 1e6
    # the kernel updates its high-water mark lazily: VmRSS can lead VmHWM by a few pages
    current = current_rss_mb()
    assert current > 0 and peak_rss_mb() >= current - 1
    if reset_peak_rss():
        block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB touched after the reset
        assert peak_rss_mb() >= current_rss_mb() - 1
        del block


def test_graph_timer_counts_nested_builds_once():
    class Store:
        def cached(self, name, params, build):
            return build()
    store = Store()
    timer = bench.GraphTimer(store)
    import time

    def outer():
        time.sleep(0.02)
        return store.cached("inner", {}, lambda: time.sleep(0.02) or 1)
    assert store.cached("outer", {}, outer) == 1
    assert 0.04 <= timer.seconds < 0.5
