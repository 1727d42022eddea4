"""`RecommenderModule`: the single LightningModule that trains and evaluates any model.

It sums the model's named loss terms and logs each (`train/loss`, `train/loss_<name>`),
ranks all items for every evaluation user with training (and, on test, validation) items
masked, feeds the top-k lists to `RankingMetrics`, and keeps the test top-k lists for
`topk.tsv`. Early stopping and checkpoints are callbacks configured in `conf/callbacks/`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor

from src.metrics.ranking import RankingMetrics
from src.models.base import Recommender


class RecommenderModule(L.LightningModule):
    def __init__(self, net: Callable[..., Recommender] | Recommender, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, data=None, graphs=None,
                 ks: tuple[int, ...] = (5, 10, 20, 50), topk_saved: int = 50, score_chunk: int = 1 << 20):
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net", "data", "graphs"])
        self.net: Recommender = net if isinstance(net, Recommender) else net(data=data, graphs=graphs)
        self.ks, self.topk_saved = tuple(ks), int(topk_saved)
        self.max_k = max(max(self.ks), self.topk_saved)
        self.score_chunk = int(score_chunk)
        self.val_metrics = RankingMetrics(self.ks)
        self.test_metrics = RankingMetrics(self.ks)
        self.test_topk: tuple[Tensor, Tensor] | None = None
        self.test_stats: dict[str, float] = {}
        self._test_parts: list[tuple[Tensor, Tensor]] = []

    # ---- training -------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._epoch_sums: dict[str, Tensor] = {}
        self._epoch_count = 0
        self.net.on_train_epoch_start(self.current_epoch)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        users, pos, neg = batch
        terms = self.net.loss_terms(users, pos, neg)
        loss = torch.stack(list(terms.values())).sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}; terms: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items()))
        # Batch-size-weighted sums, logged once per epoch (`on_train_epoch_end`): the same epoch
        # means as `self.log(..., on_epoch=True, batch_size=n)` per step, without Lightning's
        # per-call bookkeeping (~2 ms per value on a CPU, more than a whole MF step).
        n = len(users)
        with torch.no_grad():
            for name, value in (("loss", loss), *((f"loss_{k}", v) for k, v in terms.items())):
                weighted = value.detach() * n
                self._epoch_sums[name] = self._epoch_sums[name] + weighted if name in self._epoch_sums else weighted
        self._epoch_count += n
        return loss

    def on_train_epoch_end(self) -> None:
        for name, total in getattr(self, "_epoch_sums", {}).items():
            self.log(f"train/{name}", total / self._epoch_count, prog_bar=name == "loss")

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.hparams.scheduler(optimizer=optimizer), "interval": "epoch"}}

    # ---- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def rank(self, batch: dict[str, Tensor]) -> Tensor:
        """Top-`max_k` item ids per batch user, masked items excluded.

        A slot that no unmasked item can fill (a user with fewer than max_k unmasked items, or
        a catalogue smaller than max_k) holds the id `n_items`, which is never relevant.
        Users are scored in chunks of about `score_chunk` scores (at least 64 users), so the
        score block stays small (in cache for Amazon-sized catalogues, and never the
        `[batch, n_items]` matrix of a million-item one) whatever the evaluation batch size.
        """
        users, ex_row, ex_col = batch["users"], batch["exclude_row"], batch["exclude_col"]
        step = max(64, self.score_chunk // max(1, self.net.n_items))
        if step >= len(users):
            return self._rank_block(users, ex_row, ex_col)
        if len(ex_row) > 1 and not bool((ex_row[1:] >= ex_row[:-1]).all()):
            order = torch.argsort(ex_row, stable=True)
            ex_row, ex_col = ex_row[order], ex_col[order]
        starts = torch.arange(0, len(users) + step, step, device=ex_row.device).clamp_(max=len(users))
        bounds = torch.searchsorted(ex_row, starts).tolist()
        return torch.cat([self._rank_block(users[a:a + step], ex_row[lo:hi] - a, ex_col[lo:hi])
                          for a, lo, hi in zip(range(0, len(users), step), bounds, bounds[1:])])

    def _rank_block(self, users: Tensor, ex_row: Tensor, ex_col: Tensor) -> Tensor:
        scores = self.net.full_scores(users).float().contiguous()
        n_items = scores.shape[1]
        scores[ex_row, ex_col] = -math.inf
        values, topk = torch.topk(scores, min(self.max_k, n_items), dim=1)
        topk = topk.masked_fill_(values == -math.inf, n_items)
        if topk.shape[1] < self.max_k:
            topk = torch.nn.functional.pad(topk, (0, self.max_k - topk.shape[1]), value=n_items)
        return topk

    def on_validation_epoch_start(self) -> None:
        self.net.prepare_eval()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self.rank(batch), batch["target_ptr"], batch["target_index"])

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        for name, value in self.net.eval_stats().items():
            self.log(name, value, sync_dist=True)
        self._log_histograms()
        self.net.end_eval()

    def on_test_epoch_start(self) -> None:
        self._test_parts = []
        self.net.prepare_eval()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        topk = self.rank(batch)
        self.test_metrics.update(topk, batch["target_ptr"], batch["target_index"])
        self._test_parts.append((batch["users"].cpu(), topk[:, : self.topk_saved].cpu()))

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)
        # the model's diagnostics at the evaluated (best) checkpoint, for metrics.json
        self.test_stats = {k: float(v) for k, v in self.net.eval_stats().items()}
        parts = self._test_parts
        if self.trainer.world_size > 1:  # each rank ranked its own share of the users
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, parts)
            parts = [p for rank_parts in gathered for p in rank_parts]
        users = torch.cat([u for u, _ in parts])
        topk = torch.cat([t for _, t in parts])
        self.test_topk = (users, topk)
        self.net.end_eval()

    def _log_metrics(self, stage: str, metric: RankingMetrics) -> None:
        values = metric.compute()
        for name, value in values.items():
            # already reduced across processes by torchmetrics; sync_dist only silences the DDP warning
            self.log(f"{stage}/{name}", value, prog_bar=name == "recall@20", sync_dist=True)
        metric.reset()

    def _log_histograms(self) -> None:
        hists = self.net.eval_histograms()
        if not hists or self.trainer.sanity_checking:
            return
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "WandbLogger":
                import wandb
                experiment.log({name: wandb.Histogram(t.detach().float().cpu().numpy())
                                for name, t in hists.items()} | {"epoch": self.current_epoch})
            elif hasattr(experiment, "add_histogram"):  # TensorBoard
                for name, t in hists.items():
                    experiment.add_histogram(name, t.detach().float().cpu(), self.current_epoch)
