"""Modal encoder: projection (Sec. 2.1) followed by MSG and CSG (Eqs. 1-5), on two paths.

Both paths compute, per modality m and side s (users or items), H_s^m = O_s^m X^m with
X^m = E^m W_m^T + 1 b_m^T the projected item features and O_s^m the side's fixed operator
chain (`operators.py`).

* literal: project every item, then run the chain (user profiles, MSG, CSG) at every step.
* fast: O is linear and static and E is frozen, so
      O (E W^T + 1 b^T) = (O E) W^T + (O 1) b^T = [O E | O 1] [W | b]^T .
  [O E | O 1] is precomputed once per side and modality (`precompute`); a step then projects
  only the rows it needs: H[rows] = [O E | O 1][rows] [W | b]^T. The two paths are equal up to
  float rounding (tests/test_spumr.py checks this in float64) and give the same gradients for
  W and b. With trainable features (E changes) only the literal path is correct.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from src.models.spumr.operators import OperatorChain
from src.models.spumr.upa import xavier_linear

Path = Literal["auto", "fast", "literal"]
Sides = tuple[dict[str, Tensor], dict[str, Tensor]]


def resolve_path(path: str, freeze_features: bool) -> str:
    """`auto` is `fast` exactly when it is exact (frozen features; the graphs are always static)."""
    if path not in ("auto", "fast", "literal"):
        raise ValueError(f"path must be 'auto', 'fast' or 'literal', got {path!r}")
    if path == "auto":
        return "fast" if freeze_features else "literal"
    if path == "fast" and not freeze_features:
        raise ValueError("path='fast' needs freeze_features=true: with fine-tuned raw features "
                         "the precomputed tables go stale; use path='literal' or 'auto'")
    return path


class ModalEncoder(nn.Module):
    def __init__(self, features: dict[str, Tensor], user_chains: dict[str, OperatorChain],
                 item_chains: dict[str, OperatorChain], dim: int, freeze_features: bool = True,
                 path: Path = "auto", chunk_columns: int = 512):
        super().__init__()
        self.modalities = list(features)
        self.path = resolve_path(path, freeze_features)
        self.chunk_columns = int(chunk_columns)
        self.proj = nn.ModuleDict({m: xavier_linear(f.shape[1], dim) for m, f in features.items()})
        self.user_ops = nn.ModuleDict(user_chains)
        self.item_ops = nn.ModuleDict(item_chains)
        self.features = nn.ParameterDict()
        self._raw: dict[str, Tensor] = {}
        if self.path == "fast":
            self._raw = dict(features)  # CPU tensors sharing the dataset's memory; not moved
            self.precompute()
        elif freeze_features:
            for m, f in features.items():
                self.register_buffer(f"feat_{m}", f, persistent=False)
        else:  # fine-tuned raw tables (FREEDOM-style), saved in checkpoints
            self.features.update({m: nn.Parameter(f.clone()) for m, f in features.items()})

    def raw(self, m: str) -> Tensor:
        return self.features[m] if m in self.features else getattr(self, f"feat_{m}")

    # ---- fast path -------------------------------------------------------------------------
    @torch.no_grad()
    def precompute(self) -> None:
        """[O E | O 1] for both sides and every modality, in the projection's dtype and device.

        Call again after changing the model's dtype (e.g. `.double()` in tests).
        """
        for m, e in self._raw.items():
            w = self.proj[m].weight
            for side, chain in (("user", self.user_ops[m]), ("item", self.item_ops[m])):
                n_out = chain.steps[-1].op.shape[0] if len(chain.steps) else e.shape[0]
                table = torch.empty(n_out, e.shape[1] + 1, dtype=w.dtype, device=w.device)
                chain.apply_chunked(e, table[:, :-1], self.chunk_columns)           # O E
                chain.apply_chunked(torch.ones(e.shape[0], 1), table[:, -1:])       # O 1
                self.register_buffer(f"table_{side}_{m}", table, persistent=False)

    def _fast(self, side: str, m: str, rows: Tensor | None) -> Tensor:
        table = getattr(self, f"table_{side}_{m}")
        lin = self.proj[m]
        w_aug = torch.cat([lin.weight, lin.bias.unsqueeze(1)], dim=1)  # [W | b]
        return (table if rows is None else table[rows]) @ w_aug.T

    # ---- both paths ------------------------------------------------------------------------
    def forward(self, user_rows: Tensor | None = None, item_rows: Tensor | None = None) -> Sides:
        """Per-modality `H_U^m[user_rows]`, `H_I^m[item_rows]` (None = all rows)."""
        users, items = {}, {}
        for m in self.modalities:
            if self.path == "fast":
                users[m] = self._fast("user", m, user_rows)
                items[m] = self._fast("item", m, item_rows)
                continue
            x = self.proj[m](self.raw(m))                      # Sec. 2.1: x_i = W e_i + b
            hu, hi = self.user_ops[m](x), self.item_ops[m](x)  # Eqs. 1-5
            users[m] = hu if user_rows is None else hu[user_rows]
            items[m] = hi if item_rows is None else hi[item_rows]
        return users, items
