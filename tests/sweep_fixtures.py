"""Fabricated sweep directories shaped like Hydra multirun output, with chosen metric values."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def write_job(sweep: Path, num: int, model: str, dataset: str = "ds", seed: int = 1,
              test: dict | None = None, val: dict | None = None, uncertainty: dict | None = None,
              overrides: list[str] | None = None, config: dict | None = None, status: str = "ok") -> Path:
    """One job dir `<num>_<model>_<dataset>` with .hydra/ and, by status, metrics.json or error.txt."""
    job = sweep / f"{num}_{model}_{dataset}"
    (job / ".hydra").mkdir(parents=True)
    cfg = {"task_name": "fake", "seed": seed, "lambda_kl": 0.001, "lambda_u": 0.001,
           "dataset": {"name": dataset}, **(config or {})}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or [f"model={model}", f"seed={seed}"]))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"job": {"num": num}, "runtime": {"choices": {"model": model, "dataset": dataset}}}}))
    if status == "ok":
        metrics = {"best_epoch": 3, "val": val or {m: 0.0 for m in METRICS}, "test": test or {m: 0.0 for m in METRICS},
                   "epochs": 10, "train_seconds": 5.0, "seconds_per_epoch": 0.5, "eval_seconds_per_pass": 0.1,
                   "model": model, "dataset": dataset, "seed": seed}
        if uncertainty:
            metrics["uncertainty"] = uncertainty
        (job / "metrics.json").write_text(json.dumps(metrics))
    elif status == "failed":
        (job / "error.txt").write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    return job


def write_plan(sweep: Path, jobs: list[list[str]]) -> None:
    (sweep / "sweep_plan.json").write_text(json.dumps({"jobs": jobs}))
