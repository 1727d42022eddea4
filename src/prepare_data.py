"""Build one dataset folder under `data/`: `python src/prepare_data.py dataset=<name> [force=true]`.

The dataset config's `builder` node (a `_partial_` callable taking `out_dir`) does the work;
a folder holding the `.complete` marker is left alone unless `force=true`. Datasets that
cannot be built here (`builder: null`) print their `missing_help` instead.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.data.prepare.common import COMPLETE_MARKER  # noqa: E402


def prepare(cfg: DictConfig) -> int:
    """Build `cfg.dataset` into `<paths.data_dir>/<dataset.name>`; returns the exit status."""
    name = cfg.dataset.name
    out_dir = Path(cfg.paths.data_dir) / name
    builder_cfg = cfg.dataset.get("builder")
    if builder_cfg is None:
        if (out_dir / f"{name}.inter").is_file():
            print(f"{name}: found {out_dir / f'{name}.inter'} (this dataset is not built here)")
            return 0
        help_text = cfg.dataset.get("missing_help") or "(the dataset config has no missing_help)"
        print(f"{name}: cannot be built by this project; {out_dir} is missing.\n{help_text}".rstrip(),
              file=sys.stderr)
        return 2
    if (out_dir / COMPLETE_MARKER).exists() and not cfg.force:
        print(f"{name}: already built in {out_dir} (force=true rebuilds it)")
        return 0
    builder = hydra.utils.instantiate(builder_cfg)  # only the builder, never the datamodule node
    start = time.perf_counter()
    builder(out_dir=out_dir)
    print(f"{name}: built in {out_dir} in {time.perf_counter() - start:.1f} s")
    return 0


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare_data")
def main(cfg: DictConfig) -> None:
    status = prepare(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
