"""Vectorised helpers for rows of a CSR structure held as torch tensors."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def csr_tensors(m: sp.csr_matrix, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(indptr, indices) of a scipy CSR matrix as int64 tensors on `device`."""
    return (torch.as_tensor(m.indptr.astype(np.int64), device=device),
            torch.as_tensor(m.indices.astype(np.int64), device=device))


def gather_rows(indptr: Tensor, indices: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The entries of `rows` of a CSR structure, without a Python loop.

    Returns `(batch_row, cols, ptr)`: entry e belongs to position `batch_row[e]` of `rows` and
    has column `cols[e]`; `ptr` is the CSR row pointer of the gathered sub-matrix.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    ptr = torch.zeros(len(rows) + 1, dtype=torch.long, device=indptr.device)
    torch.cumsum(lengths, 0, out=ptr[1:])
    total = int(ptr[-1])
    batch_row = torch.repeat_interleave(torch.arange(len(rows), device=indptr.device), lengths,
                                        output_size=total)
    # position of each entry inside its own row, then its absolute offset in `indices`
    within = torch.arange(total, device=indptr.device) - ptr[:-1][batch_row]
    cols = indices[starts[batch_row] + within]
    return batch_row, cols, ptr
