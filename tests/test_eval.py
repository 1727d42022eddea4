"""src/eval.py re-evaluates a run's checkpoint with the training protocol."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from src.eval import evaluate
from src.train import train
from tests.helpers import ROOT, train_config


def _eval_config(out_dir, overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="eval.yaml", return_hydra_config=True,
                      overrides=[f"hydra.run.dir={out_dir}", *overrides])
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
            del cfg.hydra
    return cfg


def test_eval_reproduces_test_metrics_and_validates(tmp_path, ml100k_dir):
    run = tmp_path / "run"
    cfg = train_config(run, ["model=mf", "trainer.max_epochs=2", "seed=5"])
    train(cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # what the CLI snapshot holds
    out = evaluate(_eval_config(tmp_path / "eval", [f"run_dir={run}"]))
    reported = json.loads((run / "metrics.json").read_text())
    assert out["metrics"] == pytest.approx(reported["test"], abs=1e-12)
    assert (tmp_path / "eval" / "topk.tsv").read_text() == (run / "topk.tsv").read_text()
    # the validation split of the best checkpoint gives the val metrics of the best epoch
    val = evaluate(_eval_config(tmp_path / "eval_val", [f"run_dir={run}", "split=valid"]))
    assert val["metrics"] == pytest.approx(reported["val"], abs=1e-12)


def test_eval_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="must be a training run directory"):
        evaluate(_eval_config(tmp_path / "e", [f"run_dir={tmp_path}"]))
    with pytest.raises(ValueError, match="split must be 'test' or 'valid'"):
        evaluate(_eval_config(tmp_path / "e", [f"run_dir={tmp_path}", "split=train"]))
