"""Most-popular ranking: every user gets the items with the most training interactions.

No parameters and no training; the floor every trained model must clear.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from src.data.formats import RecData
from src.models.base import Recommender


class Pop(Recommender):
    def __init__(self, data: RecData, graphs=None):
        super().__init__(data)
        counts = np.bincount(data.train.items, minlength=data.n_items).astype(np.float32)
        self.register_buffer("popularity", torch.from_numpy(counts))

    def full_scores(self, users: Tensor) -> Tensor:
        return self.popularity.expand(len(users), -1)
