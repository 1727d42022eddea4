"""src/prepare_data.py: builds through the dataset config's `builder`, skips finished folders,
explains datasets it cannot build."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "src" / "prepare_data.py"


def load_script():
    spec = importlib.util.spec_from_file_location("prepare_data_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config(data_dir: Path, builder, force: bool = False, name: str = "synthetic_tiny"):
    return OmegaConf.create({
        "paths": {"data_dir": str(data_dir)}, "force": force,
        # a datamodule `_target_` beside the builder, as in the real dataset configs: it must
        # never be instantiated by the prepare step
        "dataset": {"_target_": "no.such.DataModule", "name": name, "builder": builder,
                    "missing_help": "Put the files in data/<name>/ by hand."},
    })


TINY_BUILDER = {"_target_": "src.data.prepare.synthetic.build_preset", "_partial_": True, "preset": "tiny"}


def test_builds_then_skips_then_rebuilds_with_force(tmp_path, capsys):
    prepare = load_script().prepare
    assert prepare(config(tmp_path, TINY_BUILDER)) == 0
    inter = tmp_path / "synthetic_tiny" / "synthetic_tiny.inter"
    assert inter.is_file() and (inter.parent / ".complete").is_file()
    inter.write_text("marker")  # a rebuild would overwrite this
    assert prepare(config(tmp_path, TINY_BUILDER)) == 0
    assert "already built" in capsys.readouterr().out and inter.read_text() == "marker"
    assert prepare(config(tmp_path, TINY_BUILDER, force=True)) == 0
    assert inter.read_text().startswith("userID\titemID")


def test_dataset_without_builder_prints_help_and_fails(tmp_path, capsys):
    prepare = load_script().prepare
    assert prepare(config(tmp_path, None, name="baby")) != 0
    assert "Put the files in data/<name>/ by hand." in capsys.readouterr().err
    (tmp_path / "baby").mkdir()
    (tmp_path / "baby" / "baby.inter").write_text("userID\titemID\tx_label\n")
    assert prepare(config(tmp_path, None, name="baby")) == 0  # present: nothing to do


def test_command_line(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "dataset=synthetic", f"paths.data_dir={tmp_path}"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "synthetic_tiny" / ".complete").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_tiny"]  # no logs, no .hydra
