"""Experiment sweeps end to end: real multiruns, the report callback, failures, W&B, configs."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.reporting.collect import expand_plan
from tests.helpers import ROOT, train_config

QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]


def multirun(sweep_dir, *overrides, env=None, timeout=600):
    return subprocess.run([sys.executable, "src/train.py", "-m", *overrides, *QUICK, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_multirun_ends_with_a_report(tmp_path, ml100k_dir):
    run = multirun(tmp_path, "model=pop,mf", "seed=1")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["status"].tolist() == ["ok", "ok"] and summary["model"].tolist() == ["pop", "mf"]
    table = (tmp_path / "table.md").read_text()
    lines = table.splitlines()
    assert sum(line.startswith("| Pop | ") for line in lines) == 1               # the results row
    assert sum(line.startswith("| ml100k | Pop | 1 |") for line in lines) == 1  # the run-times row
    assert (tmp_path / "sweep_plan.json").is_file()


def test_a_failed_job_is_recorded_and_the_others_kept(tmp_path, ml100k_dir):
    # pop takes no reg_weight: its job raises at model construction; mf trains
    run = multirun(tmp_path, "model=pop,mf", "++model.net.reg_weight=0.1")
    assert run.returncode == 1  # the sweep reports the failure, after the report
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("model")
    assert summary.loc["pop", "status"] == "failed" and "reg_weight" in summary.loc["pop", "error"]
    assert summary.loc["mf", "status"] == "ok"
    assert "unexpected keyword argument 'reg_weight'" in (tmp_path / "0_pop_ml100k" / "error.txt").read_text()
    assert (tmp_path / "1_mf_ml100k" / "metrics.json").is_file()
    assert "0_pop_ml100k | failed" in (tmp_path / "table.md").read_text()


@pytest.mark.slow
def test_parallel_launcher(tmp_path, ml100k_dir):
    run = multirun(tmp_path, "model=pop,mf", "hydra/launcher=parallel")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in run.stderr + run.stdout
    assert pd.read_csv(tmp_path / "summary.csv")["status"].tolist() == ["ok", "ok"]


@pytest.mark.slow
def test_wandb_offline_one_run_per_job_with_group_and_tags(tmp_path, ml100k_dir):
    run = multirun(tmp_path, "model=mf", "seed=1,2", "logger=wandb", "task_name=wbgroup",
                   env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert run.returncode == 0, run.stderr[-3000:]
    for num, seed in ((0, 1), (1, 2)):
        runs = list((tmp_path / f"{num}_mf_ml100k" / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs  # each job finished its own run
        blob = next(runs[0].glob("*.wandb")).read_bytes()
        assert b"wbgroup" in blob and f"seed{seed}".encode() in blob and f"mf-ml100k-seed{seed}".encode() in blob
        assert f"seed{3 - seed}".encode() not in blob  # nothing of the other job


# --------------------------------------------------------------------------- experiment configs
@pytest.fixture
def loader():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def _params(name: str) -> dict:
    cfg = compose(config_name="train.yaml", return_hydra_config=True,
                  overrides=[f"experiment={name}", "model=mf"])  # model=mf: works before SPUMR lands
    return dict(cfg.hydra.sweeper.params)


def test_table2_sweeps_every_model_config_over_three_seeds(loader):
    jobs = expand_plan(_params("table2"), [], loader)
    models = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    assert sorted({j[0] for j in jobs}) == [f"model={m}" for m in models]
    assert "model=pop" in {j[0] for j in jobs}
    assert len(jobs) == 3 * len(models) and {j[1] for j in jobs} == {"seed=1", "seed=2", "seed=3"}


@pytest.mark.parametrize("name, values", [("sensitivity", ["0.01", "0.005", "0.001", "0.0005", "0.0001"]),
                                          ("sensitivity_corner", ["0.01", "0.005", "0.001"])])
def test_sensitivity_grids(loader, name, values):
    jobs = expand_plan(_params(name), ["dataset=baby,sports,clothing"], loader)
    assert len(jobs) == len(values) ** 2 * 3
    assert {j[0] for j in jobs} == {f"lambda_kl={v}" for v in values}
    assert {j[1] for j in jobs} == {f"lambda_u={v}" for v in values}


def test_ablation_plan_and_variants(loader, tmp_path):
    jobs = expand_plan(_params("ablation"), [], loader)
    assert len(jobs) == 12 and {j[0] for j in jobs} == {f"+ablation={v}" for v in ("full", "wo_msg", "wo_csg", "wo_upa")}
    switches = {}
    for variant in ("full", "wo_msg", "wo_csg", "wo_upa"):
        cfg = train_config(tmp_path, ["model=mf", f"+ablation={variant}"])
        switches[cfg.variant] = (cfg.model.net.use_msg, cfg.model.net.use_csg, cfg.model.net.use_upa)
    assert switches == {"SPUMR": (True, True, True), "w/o MSG": (False, True, True),
                        "w/o CSG": (True, False, True), "w/o UPA": (True, True, False)}


def test_noise_plan_excludes_pop_and_mf(loader):
    jobs = expand_plan(_params("noise"), [], loader)
    models = {j[0] for j in jobs}
    assert "model=pop" not in models and "model=mf" not in models and "model=lightgcn" in models
    assert {j[1] for j in jobs} == {"noise.fraction=0.0", "noise.fraction=0.2", "noise.fraction=0.5",
                                    "noise.fraction=1.0"}


def test_metrics_json_counts_every_epoch_when_the_best_is_early(tmp_path, ml100k_dir):
    """lr = 0: validation never improves after epoch 0, so the best checkpoint is epoch 0; the
    run still trained 3 epochs (testing that checkpoint must not rewind the run's record)."""
    from src.train import train
    cfg = train_config(tmp_path, ["model=mf", "trainer.max_epochs=3", "+trainer.limit_train_batches=2",
                                  "model.optimizer.lr=0.0", "seed=1"])
    metrics = train(cfg)
    assert metrics["best_epoch"] == 0 and metrics["epochs"] == 3
    assert metrics["seconds_per_epoch"] == pytest.approx(metrics["train_seconds"] / 3)
