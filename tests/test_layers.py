"""SparseOp and propagate against dense references."""
from __future__ import annotations

import pytest
import torch

from src.models.layers import SparseOp, propagate


def _random_sparse(n_rows, n_cols, density=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n_rows, n_cols, generator=g, dtype=torch.float64)
    dense[dense > density] = 0
    return dense


@pytest.mark.parametrize("shape", [(7, 7), (5, 9)])
def test_forward_and_backward_match_dense(shape):
    dense = _random_sparse(*shape)
    op = SparseOp(dense.to_sparse())
    x = torch.randn(shape[1], 3, dtype=torch.float64, requires_grad=True)
    y = op(x)
    assert torch.allclose(y, dense @ x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, dense.T @ w)
    assert torch.autograd.gradcheck(lambda t: op(t), (torch.randn(shape[1], 2, dtype=torch.float64,
                                                                  requires_grad=True),))


def test_accepts_csr_and_float32_and_vectors():
    dense = _random_sparse(6, 6).float()
    op = SparseOp(dense.to_sparse_csr())
    x = torch.randn(6)
    assert torch.allclose(op(x), dense @ x, atol=1e-6)
    assert op(x).dtype == torch.float32


def test_shape_mismatch_and_dense_input():
    op = SparseOp(_random_sparse(4, 5).to_sparse())
    with pytest.raises(ValueError, match="cannot multiply a tensor with 4 rows"):
        op(torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="needs a sparse tensor"):
        SparseOp(torch.eye(3))


def test_buffers_move_and_stay_out_of_state_dict():
    module = torch.nn.Module()
    module.op = SparseOp(_random_sparse(4, 4).to_sparse())
    assert module.state_dict() == {}
    module.double()  # dtype change rebuilds the cached scipy view
    x = torch.randn(4, 2, dtype=torch.float64)
    assert torch.allclose(module.op(x), _random_sparse(4, 4) @ x)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_propagate(readout):
    dense = _random_sparse(6, 6)
    op = SparseOp(dense.to_sparse())
    x = torch.randn(6, 2, dtype=torch.float64)
    layers = [x, dense @ x, dense @ dense @ x, dense @ dense @ dense @ x]
    expected = layers[-1] if readout == "last" else sum(layers) / 4
    assert torch.allclose(propagate(op, x, 3, readout), expected)
    assert torch.equal(propagate(op, x, 0, readout), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    dense = _random_sparse(50, 40).float()
    op = SparseOp(dense.to_sparse())
    x = torch.randn(40, 8, requires_grad=True)
    y_cpu = op(x)
    y_cpu.sum().backward()
    g_cpu = x.grad.clone()
    op = op.cuda()
    xc = x.detach().cuda().requires_grad_()
    y = op(xc)
    y.sum().backward()
    assert torch.allclose(y.cpu(), y_cpu, atol=1e-5) and torch.allclose(xc.grad.cpu(), g_cpu, atol=1e-5)
