"""`final_embeddings()` (what t-SNE and other analyses read) is what the scores are made of.

For every model that scores by a dot product, users @ items.T of its final embeddings must equal
`full_scores` of all users, before and after `prepare_eval()` (cached or recomputed).
"""
from __future__ import annotations

import pytest
import torch

from src.data.graph_store import GraphStore
from src.models.bm3 import BM3
from src.models.damrs import DAMRS
from src.models.freedom import FREEDOM
from src.models.lgmrec import LGMRec
from src.models.lightgcn import LightGCN
from src.models.mf import MF
from src.models.mmgcn import MMGCN
from src.models.spumr import SPUMR
from src.models.vbpr import VBPR
from tests.model_checks import tiny_data

MODELS = {
    "mf": (MF, {}), "lightgcn": (LightGCN, {}), "vbpr": (VBPR, {}), "mmgcn": (MMGCN, {}),
    "freedom": (FREEDOM, {"knn_k": 3}), "bm3": (BM3, {"dropout": 0.0}), "lgmrec": (LGMRec, {"eval_gumbel_noise": False}),
    # LGMRec: noise-free evaluation, so that recomputing gives the same Gumbel-free embeddings
    "damrs": (DAMRS, {"knn_k": 3, "n_pseudo": 3}), "spumr": (SPUMR, {"knn_k": 3}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_final_embeddings_reproduce_the_scores(name):
    cls, kwargs = MODELS[name]
    torch.manual_seed(0)
    data = tiny_data(n_users=9, n_items=16)
    net = cls(data, GraphStore(data), embedding_dim=8, **kwargs).eval()
    all_users = torch.arange(data.n_users)
    with torch.no_grad():
        net.prepare_eval()
        users, items = net.final_embeddings()
        assert users.shape[0] == data.n_users and items.shape[0] == data.n_items
        torch.testing.assert_close(users @ items.T, net.full_scores(all_users), rtol=1e-5, atol=1e-6)
        net.end_eval()
        users2, items2 = net.final_embeddings()  # recomputed without the evaluation cache
        torch.testing.assert_close(users2 @ items2.T, users @ items.T, rtol=1e-5, atol=1e-6)
