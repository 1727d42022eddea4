"""Evaluate a trained run's checkpoint: `python src/eval.py run_dir=outputs/runs/<stamp>_...`.

Rebuilds the dataset and model from the run's config snapshot, loads the checkpoint and
ranks all items for every user of the split under the same protocol as training. Writes
`eval_metrics.json` (and `topk.tsv` for the test split) into this job's run dir.
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
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from src.utils.outputs import write_metrics, write_topk  # noqa: E402
from src.utils.wrapper import task_wrapper  # noqa: E402

log = logging.getLogger(__name__)


def checkpoint_path(run_dir: Path, ckpt: str) -> Path:
    path = run_dir / "checkpoints" / f"{ckpt}.ckpt" if ckpt in ("best", "last") else Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (ckpt={ckpt!r}: use best, last or a .ckpt path)")
    return path


def run_config(run_dir: Path, cfg: DictConfig) -> DictConfig:
    """The training run's config, with this job's paths and trainer."""
    snapshot = run_dir / ".hydra" / "config.yaml"
    if not snapshot.is_file():
        raise FileNotFoundError(f"{snapshot} not found: run_dir must be a training run directory")
    train_cfg = OmegaConf.load(snapshot)
    with open_dict(train_cfg):
        train_cfg.paths = cfg.paths
        train_cfg.trainer = cfg.trainer
        train_cfg.trainer.logger = False
        if cfg.get("mask_valid_in_test") is not None:
            train_cfg.dataset.mask_valid_in_test = cfg.mask_valid_in_test
    return train_cfg


@task_wrapper
def evaluate(cfg: DictConfig) -> dict:
    if cfg.split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {cfg.split!r}")
    run_dir = Path(cfg.run_dir).resolve()
    train_cfg = run_config(run_dir, cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(train_cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("test")
    module = hydra.utils.instantiate(train_cfg.model, _partial_=True)(data=datamodule.data,
                                                                      graphs=datamodule.graphs)
    ckpt = None
    if module.net.trainable:  # models with nothing to train (pop) have no checkpoint
        ckpt = checkpoint_path(run_dir, cfg.ckpt)
        module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    trainer: L.Trainer = hydra.utils.instantiate(train_cfg.trainer, callbacks=[])

    if cfg.split == "test":
        trainer.test(module, datamodule=datamodule)
    else:  # rank the validation users through the test loop, with the validation masks
        trainer.test(module, dataloaders=datamodule.eval_batches("valid"))
    metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith("test/")}
    out = {"run_dir": str(run_dir), "checkpoint": str(ckpt) if ckpt else None, "split": cfg.split,
           "mask_valid_in_test": bool(train_cfg.dataset.get("mask_valid_in_test", True)), "metrics": metrics}
    if module.test_stats:
        out["uncertainty"] = module.test_stats
    if trainer.is_global_zero:
        out_dir = Path(cfg.paths.output_dir)
        write_metrics(out_dir / "eval_metrics.json", out)
        if cfg.split == "test":
            users, topk = module.test_topk
            write_topk(out_dir / "topk.tsv", users.numpy(), topk.numpy(), datamodule.data.n_items)
        log.info("%s metrics of %s: recall@20 %.4f", cfg.split, ckpt or run_dir, metrics.get("recall@20", float("nan")))
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
