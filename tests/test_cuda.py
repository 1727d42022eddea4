"""The CUDA code paths (skipped on a machine without a CUDA device).

On the CPU, `SparseOp` runs through scipy and KNN through the CPU routes; on a GPU these take
other code (torch CSR products, device-side top-k, device sampling, GPU memory in the bench).
Each test compares the GPU result with the CPU one or checks a property.
"""
from __future__ import annotations

import csv

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def test_sparse_op_forward_and_backward_match_the_cpu():
    from src.models.layers import SparseOp
    g = torch.Generator().manual_seed(0)
    dense = (torch.rand(50, 40, generator=g) < 0.1) * torch.rand(50, 40, generator=g)
    op_cpu = SparseOp(dense.to_sparse())
    op_gpu = SparseOp(dense.to_sparse()).to(CUDA)
    x = torch.randn(40, 8, generator=g, requires_grad=True)
    xg = x.detach().to(CUDA).requires_grad_()
    y, yg = op_cpu(x), op_gpu(xg)
    torch.testing.assert_close(yg.cpu(), y, atol=1e-5, rtol=1e-5)
    y.square().sum().backward()
    yg.square().sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), x.grad, atol=1e-5, rtol=1e-5)


def test_rank_on_the_gpu_equals_the_cpu():
    from src.models.module import RecommenderModule
    from tests.test_rank_chunks import FixedScores, _batch
    scores = torch.randn(300, 120, generator=torch.Generator().manual_seed(0))
    batch = _batch(300, 120, 1)
    cpu = RecommenderModule(FixedScores(scores), score_chunk=1).rank(batch)
    module = RecommenderModule(FixedScores(scores), score_chunk=1).to(CUDA)
    gpu = module.rank({k: v.to(CUDA) for k, v in batch.items()})
    assert torch.equal(gpu.cpu(), cpu)


def test_knn_graphs_on_the_gpu_match_the_cpu():
    import scipy.sparse as sp
    from src.data.knn import knn_graphs
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=g)
    r = sp.random(200, 300, density=0.05, format="csr", random_state=0)
    cpu = knn_graphs(r, x, 5, method="direct")
    gpu = knn_graphs(r, x.to(CUDA), 5, method="direct")
    for side in ("items", "users"):
        assert torch.equal(gpu[side][0].cpu(), cpu[side][0])
        torch.testing.assert_close(gpu[side][1].cpu(), cpu[side][1], atol=1e-5, rtol=0)


def test_sampler_on_the_gpu_never_returns_a_training_pair():
    import numpy as np
    from src.data.sampling import BPRSampler
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 2000), rng.integers(0, 30, 2000)
    keys = np.unique(users * 30 + items)
    users, items = keys // 30, keys % 30
    sampler = BPRSampler(users, items, 30, 256, seed=0, device=CUDA)
    u, p, n = sampler.epoch(0)
    assert u.device.type == "cuda" and len(u) == len(users)
    assert not bool(sampler.is_training_pair(u, n).any())


def test_bench_on_the_gpu_reports_gpu_memory(tmp_path):
    from src import bench
    out = tmp_path / "out"
    bench.main(["--scale", "tiny", "--models", "spumr", "--device", "cuda", "--epochs", "1", "--warmup", "1",
                "--eval-repeats", "1", "--flop-steps", "1", "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    row = next(csv.DictReader((out / "bench.csv").open()))
    assert row["device"].startswith("cuda") and row["error"] == ""
    assert float(row["gpu_peak_mb"]) > 0 and float(row["epoch_s"]) > 0
