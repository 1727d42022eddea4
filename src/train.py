"""Train and test one model on one dataset: `python src/train.py model=lightgcn dataset=ml100k`.

Writes into the Hydra run dir: metrics.json, topk.tsv, checkpoints/ (best, last), the
config snapshot (.hydra/) and the logger folders (DESIGN.md, "Run outputs").
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # large CPU tensors on huge pages (src/__init__.py)

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.utils.callbacks import RunRecorder  # noqa: E402
from src.utils.instantiate import instantiate_callbacks, instantiate_loggers  # noqa: E402
from src.utils.outputs import write_metrics, write_topk  # noqa: E402
from src.utils.wrapper import task_wrapper  # noqa: E402

log = logging.getLogger(__name__)


def _find(callbacks, kind):
    return next((c for c in callbacks if isinstance(c, kind)), None)


@task_wrapper
def train(cfg: DictConfig) -> dict:
    """Fit (unless the model has nothing to train), test the best checkpoint, write outputs."""
    if cfg.get("num_threads") is not None:
        torch.set_num_threads(int(cfg.num_threads))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)

    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    # data and graphs are Python objects, not config: bind them after instantiation
    module = hydra.utils.instantiate(cfg.model, _partial_=True)(data=datamodule.data, graphs=datamodule.graphs)

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    recorder = _find(callbacks, RunRecorder) or RunRecorder()
    if recorder not in callbacks:
        callbacks.append(recorder)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    ckpt_path = None
    if cfg.get("train", True) and module.net.trainable:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        ckpt_cb = trainer.checkpoint_callback
        ckpt_path = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    elif not module.net.trainable:
        trainer.validate(module, datamodule=datamodule)  # nothing to fit: one validation pass
    elif cfg.get("ckpt_path"):
        ckpt_path = cfg.ckpt_path

    run_summary = recorder.summary()  # before testing: loading a checkpoint rewinds the recorder
    metrics: dict = {}
    if cfg.get("test", True):
        if module.net.trainable and ckpt_path is None:
            log.warning("no best checkpoint: testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        metrics = collect_metrics(cfg, trainer, module, run_summary)
        if trainer.is_global_zero:
            users, topk = module.test_topk
            write_topk(out_dir / "topk.tsv", users.numpy(), topk.numpy(), datamodule.data.n_items)
            write_metrics(out_dir / "metrics.json", metrics)
            log.info("test: %s", {k: round(v, 4) for k, v in metrics["test"].items() if k.endswith("@20")})
            log.info("outputs in %s", out_dir)
    return metrics


def collect_metrics(cfg: DictConfig, trainer: L.Trainer, module, run_summary: dict) -> dict:
    """metrics.json (DESIGN.md, "Run outputs"); best_epoch is 0-based."""
    test = {k[len("test/"):]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    metrics = {**run_summary, "test": test, "model": _choice("model"), "dataset": cfg.dataset.get("name"),
               "seed": cfg.get("seed")}
    if module.test_stats:
        metrics["uncertainty"] = module.test_stats
    return metrics


def _choice(group: str) -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # not running under Hydra (e.g. called from a test)
        return None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception:
        if not _in_multirun():
            raise
        # Hydra's sweeper would re-raise this after the batch, skip the later batches and
        # the end-of-sweep report; the traceback is in this job's error.txt (task_wrapper)
        # and the report callback fails the sweep once every job has run.
        log.error("job failed (traceback in %s/error.txt); the sweep goes on", cfg.paths.output_dir)
        return None
    # for Hydra sweepers (e.g. Optuna): the value to optimise, always a validation metric
    name = cfg.get("optimized_metric")
    if name and metrics:
        stage, key = name.split("/", 1)
        return metrics.get(stage, {}).get(key)
    return None


if __name__ == "__main__":
    main()
