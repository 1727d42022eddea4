"""Build, fetch or check one dataset folder under `data/`.

    python src/prepare_data.py dataset=<name> [force=true]        # the dataset config's builder
    python src/prepare_data.py source=amazon2014 category=Baby raw_dir=<dir> name=baby
    python src/prepare_data.py dataset=<name> verify_only=true    # check the files, exit 1 if wrong

Without `source`, the dataset config's `builder` node (a `_partial_` callable taking `out_dir`)
does the work: ml100k is built, baby/sports/clothing are downloaded. With `source` (a config
of `conf/source/`), that builder makes `data/<name>` from raw files instead. A folder holding
the `.complete` marker is left alone unless `force=true`. Datasets that cannot be built here
(`builder: null`) print their `missing_help`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # large CPU tensors on huge pages (src/__init__.py)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from src.data.formats import DatasetError  # noqa: E402
from src.data.prepare.common import COMPLETE_MARKER  # noqa: E402
from src.data.verify import verify_dataset  # noqa: E402


def verify(cfg: DictConfig) -> int:
    """Print the verification report of `data/<name>`; 0 when no check failed."""
    name = cfg.get("name") or cfg.dataset.name
    root = Path(cfg.paths.data_dir) / name
    if name == cfg.dataset.name:
        modalities = dict(cfg.dataset.get("modalities") or {})
    else:  # a dataset with no config of its own (e.g. built from raw files): check what is there
        modalities = {p.name[:-len("_feat.npy")]: p.name for p in sorted(root.glob("*_feat.npy"))}
    report = verify_dataset(root, name, modalities)
    print(report)
    return 0 if report.ok else 1


def target(cfg: DictConfig) -> tuple[str, DictConfig | None]:
    """The dataset name and the builder node: the raw-file `source` when one is chosen,
    else the dataset config's own builder."""
    if cfg.get("source") is None:
        return cfg.dataset.name, cfg.dataset.get("builder")
    from src.data.prepare.amazon import default_name

    if not cfg.get("raw_dir"):
        raise DatasetError("source=... needs raw_dir=<folder holding the raw files>")
    if not (cfg.get("name") or cfg.get("category")):
        raise DatasetError("source=... needs category=<C as in the raw file names> or name=baby|sports|clothing")
    return cfg.get("name") or default_name(cfg.category), cfg.source


def prepare(cfg: DictConfig) -> int:
    """Build the chosen dataset into `<paths.data_dir>/<name>`; returns the exit status."""
    if cfg.get("verify_only"):
        return verify(cfg)
    try:
        name, builder_cfg = target(cfg)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(cfg.paths.data_dir) / name
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
    try:
        builder(out_dir=out_dir)
    except DatasetError as e:  # bad input or no network: the message says what to do
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    print(f"{name}: built in {out_dir} in {time.perf_counter() - start:.1f} s")
    return 0


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare_data")
def main(cfg: DictConfig) -> None:
    status = prepare(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
