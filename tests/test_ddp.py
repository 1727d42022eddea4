"""Training and evaluation under DDP (two CPU processes, gloo) against one process."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _run(args, timeout=600):
    run = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run


def test_ddp_metrics_equal_single_process_eval(tmp_path, ml100k_dir):
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    _run(["src/train.py", "model=mf", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
          "trainer.max_epochs=2", "+trainer.limit_train_batches=10", f"hydra.run.dir={train_dir}"])
    _run(["src/eval.py", f"run_dir={train_dir}", f"hydra.run.dir={eval_dir}"])
    ddp = json.loads((train_dir / "metrics.json").read_text())["test"]
    single = json.loads((eval_dir / "eval_metrics.json").read_text())["metrics"]
    assert set(ddp) == set(single)
    for name in ddp:  # the two processes' metric states summed == one process over all users
        assert ddp[name] == pytest.approx(single[name], abs=1e-12), name
    # each process ranked half of the users; the gathered lists are the single-process lists
    assert (train_dir / "topk.tsv").read_text() == (eval_dir / "topk.tsv").read_text()
