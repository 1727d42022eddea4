"""Rebuild a finished run's data module and model from its run dir, with the best checkpoint.

`load_run(run_dir)` reads `.hydra/config.yaml` (the job's composed config; its dataset and
model nodes need no `${hydra:...}` value, and `paths.output_dir` is set to the run dir),
instantiates the data module (same dataset, same transform, e.g. the same noise) and the
model, and loads `checkpoints/best.ckpt` into it. Nothing is written into the run dir.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class RunError(ValueError):
    """A run dir cannot be loaded; the message says which file and what was expected."""


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: DictConfig
    datamodule: object
    module: object  # RecommenderModule
    checkpoint: Path | None

    @property
    def net(self):
        return self.module.net

    @property
    def name(self) -> str:
        """A short label: model (and variant, seed) of the run."""
        parts = [str(self.cfg.get("variant") or _choice(self.run_dir, "model") or type(self.net).__name__)]
        if self.cfg.get("seed") is not None:
            parts.append(f"seed {self.cfg.seed}")
        return ", ".join(parts)


def _choice(run_dir: Path, group: str) -> str | None:
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None
    return OmegaConf.select(OmegaConf.load(path), f"hydra.runtime.choices.{group}")


def load_run(run_dir: str | Path, data_dir: str | Path | None = None, checkpoint: str = "best") -> LoadedRun:
    """The run's data module and model with `checkpoints/<checkpoint>.ckpt` loaded, in eval mode."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise RunError(f"{run_dir}: no .hydra/config.yaml; expected the run dir of src/train.py")
    cfg = OmegaConf.load(cfg_path)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        if data_dir is not None:
            cfg.paths.data_dir = str(data_dir)
        transform = cfg.dataset.get("transform")
        if isinstance(transform, DictConfig) and "record_path" in transform:
            transform.record_path = None  # the run already recorded its corruption
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.setup("fit")
    module = hydra.utils.instantiate(cfg.model, _partial_=True)(data=datamodule.data, graphs=datamodule.graphs)
    ckpt_path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if module.net.trainable:
        if not ckpt_path.is_file():
            raise RunError(f"{ckpt_path}: checkpoint not found; expected the run's checkpoints/ "
                           f"(written by the model_checkpoint callback)")
        # our own file, written by Lightning: its hyper-parameters hold partials, so not weights_only
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    else:
        ckpt_path = None
    module.eval()
    return LoadedRun(run_dir=run_dir, cfg=cfg, datamodule=datamodule, module=module, checkpoint=ckpt_path)
