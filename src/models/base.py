"""The one small interface every model implements (plain `nn.Module`, no Lightning).

A model is built from the dataset (`RecData`: counts, features, training pairs) and the
`GraphStore` (cached graphs), plus its own hyper-parameters. The harness
(`module.RecommenderModule`) only calls the methods below.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from src.data.formats import RecData


class Recommender(nn.Module):
    #: multimodal models set this; they refuse a dataset that declares no modalities
    requires_modalities: bool = False

    def __init__(self, data: RecData):
        super().__init__()
        self.n_users, self.n_items = data.n_users, data.n_items
        if self.requires_modalities and not data.features:
            raise ValueError(f"{type(self).__name__} needs modal features, but dataset '{data.name}' "
                             f"declares no modalities; use an ID-only model (pop, mf, lightgcn) "
                             f"or a dataset with features")

    def loss_terms(self, users: Tensor, pos: Tensor, neg: Tensor) -> dict[str, Tensor]:
        """Named, already weighted loss terms for a batch; the training loss is their sum.

        Names become log keys `train/loss_<name>` (e.g. `bpr`, `reg`, `cl`, `kl`, `u`).
        """
        raise NotImplementedError

    def full_scores(self, users: Tensor) -> Tensor:
        """Scores of `users` against every item, `[len(users), n_items]` (no masking)."""
        raise NotImplementedError

    # ---- optional hooks -------------------------------------------------------------------
    def on_train_epoch_start(self, epoch: int) -> None:
        """Per-epoch work (e.g. edge dropout / pruning schedules)."""

    def prepare_eval(self) -> None:
        """Called once before an evaluation pass (e.g. propagate the graph once and cache)."""

    def end_eval(self) -> None:
        """Called after an evaluation pass; drop what `prepare_eval` cached."""

    def eval_stats(self) -> dict[str, float]:
        """Scalars to log at every validation epoch (e.g. gate weights, σ); empty by default."""
        return {}

    def eval_histograms(self) -> dict[str, Tensor]:
        """Tensors to log as histograms when the logger supports them."""
        return {}

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """(users `[n_users, d]`, items `[n_items, d]`): the representations scores are made
        from, for analyses such as t-SNE (src/visualize.py). Call after `prepare_eval()`."""
        raise NotImplementedError(f"{type(self).__name__} does not expose final embeddings")

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Eq. (10): mean of -ln σ(ŷ_ui − ŷ_uj), computed stably with logsigmoid."""
    return -torch.nn.functional.logsigmoid(pos_scores - neg_scores).mean()


def l2_reg(*embeddings: Tensor) -> Tensor:
    """MMRec's `EmbLoss`: sum of the Frobenius norms of the batch embeddings / batch size."""
    return sum(torch.linalg.vector_norm(e) for e in embeddings) / embeddings[-1].shape[0]
