"""Counting the floating-point work of a training step or an evaluation pass, and the floor.

Counted, not estimated from a formula: dense products through torch's `FlopCounterMode`
(2mnk per `mm`/`addmm`/`bmm`, forward and backward as autograd actually runs them, so a frozen
input gets no input-gradient product), and every fixed sparse product of a `SparseOp`
(forward `A x` and backward `Aᵀ g`, both through `SparseOp.apply_matrix`) as 2·nnz·d.
Element-wise work (activations, losses, the optimiser's update) is not counted: the floor is
the time the counted products would take at the machine's dense matmul rate, which no
element-wise op reaches anyway.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from src.models.layers import SparseOp


@dataclass
class FlopCount:
    dense: int = 0
    sparse: int = 0

    @property
    def total(self) -> int:
        return self.dense + self.sparse


class _GlobalOnly:
    """Stands in for `FlopCounterMode`'s per-module tracker: only the global total is used here,
    and the tracker's forward hooks fail on a module called under `no_grad`/`inference_mode`
    with a parameter as input (FREEDOM's `propagate(item_graph, item_emb)` at evaluation)."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        return None


@contextmanager
def count_flops():
    """`with count_flops() as c: ...` fills `c.dense` and `c.sparse` when the block ends."""
    count = FlopCount()
    original = SparseOp.apply_matrix

    def counted(op: SparseOp, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        count.sparse += 2 * op.nnz * (x.shape[1] if x.dim() == 2 else 1)
        return original(op, x, transpose)

    SparseOp.apply_matrix = counted
    mode = FlopCounterMode(display=False)
    mode.mod_tracker = _GlobalOnly()
    try:
        with mode:
            yield count
    finally:
        SparseOp.apply_matrix = original
        count.dense = int(mode.get_total_flops())


def matmul_rate(device: torch.device | str = "cpu", n: int = 2048, repeats: int = 7) -> float:
    """FLOP/s of an n x n float32 matmul on `device` (median of `repeats` after one warm-up)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 2.0 * n ** 3 / times[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
