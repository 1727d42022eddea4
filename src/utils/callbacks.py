"""`RunRecorder`: the per-epoch record behind metrics.json (best epoch, timings)."""
from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch


class RunRecorder(L.Callback):
    """Records, per epoch, the training seconds, the validation seconds and the val metrics.

    Training time runs from `on_train_epoch_start` to the start of that epoch's validation
    (Lightning validates before `on_train_epoch_end`), so it includes triplet sampling and
    excludes evaluation.
    """

    def __init__(self, monitor: str = "val/recall@20", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.train_seconds: list[float] = []
        self.eval_seconds: list[float] = []
        self.val_history: list[dict[str, float]] = []
        self._t0: float | None = None
        self._v0: float | None = None

    def _close_train(self) -> None:
        if self._t0 is not None:
            self.train_seconds.append(time.perf_counter() - self._t0)
            self._t0 = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._close_train()
        self._v0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        # not on_validation_epoch_end: callbacks run that hook before the module logs its
        # metrics; by on_validation_end they are in callback_metrics (ModelCheckpoint and
        # EarlyStopping read them here too)
        if trainer.sanity_checking or self._v0 is None:
            return
        self.eval_seconds.append(time.perf_counter() - self._v0)
        metrics = {k[len("val/"):]: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("val/") and isinstance(v, torch.Tensor)}
        metrics["epoch"] = trainer.current_epoch
        self.val_history.append(metrics)
        self._v0 = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_train()

    def best(self) -> dict[str, float] | None:
        """The validation record of the best epoch (the first one, on ties)."""
        key = self.monitor.split("/", 1)[-1]
        scored = [h for h in self.val_history if key in h]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda h: h[key])  # max/min return the first extreme

    def summary(self) -> dict:
        """The run-level fields of metrics.json. Take it before `trainer.test(ckpt_path=...)`:
        loading a checkpoint restores this callback's state as of that checkpoint's epoch."""
        best = self.best() or {}
        train_s = float(sum(self.train_seconds))
        epochs = len(self.train_seconds)
        return {
            "best_epoch": int(best.get("epoch", 0)),
            "val": {k: v for k, v in best.items() if k != "epoch"},
            "epochs": epochs,
            "train_seconds": train_s,
            "seconds_per_epoch": train_s / epochs if epochs else 0.0,
            "eval_seconds_per_pass": float(np.mean(self.eval_seconds)) if self.eval_seconds else 0.0,
        }

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
                "val_history": self.val_history}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = list(state["train_seconds"])
        self.eval_seconds = list(state["eval_seconds"])
        self.val_history = list(state["val_history"])
