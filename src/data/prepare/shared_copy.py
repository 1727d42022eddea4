"""Copy a checked interaction file from the shared reference folder into data/<name>/.

Used by `baby_ids`: the real Amazon Baby interactions with MMRec's split live in
`../shared/datasets/baby/` beside a `SHA256SUMS` file; the copy is verified against it and
renamed to `<name>.inter`, so the dataset folder follows the MMRec layout.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from src.data.formats import DatasetError, file_digest
from src.data.prepare.common import atomic_dataset_dir

log = logging.getLogger(__name__)


def expected_digest(source: Path, filename: str) -> str:
    sums = source / "SHA256SUMS"
    if not sums.is_file():
        raise DatasetError(f"{sums}: checksum file not found; cannot verify {filename}")
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename:
            return parts[0].lower()
    raise DatasetError(f"{sums}: no checksum line for {filename}")


def build(out_dir: str | Path, source: str | Path, filename: str) -> dict:
    out_dir, source = Path(out_dir), Path(source)
    src = source / filename
    if not src.is_file():
        raise DatasetError(f"{src}: not found. This dataset is copied from the shared reference folder "
                           f"({source}); place {filename} there (with its SHA256SUMS) and retry")
    want, got = expected_digest(source, filename), file_digest(src)
    if got != want:
        raise DatasetError(f"{src}: sha256 is {got}, expected {want} (from {source / 'SHA256SUMS'}); "
                           f"the file is damaged or a different version")
    with atomic_dataset_dir(out_dir) as tmp:
        shutil.copyfile(src, Path(tmp) / f"{out_dir.name}.inter")
    log.info("copied %s (sha256 verified) to %s", src, out_dir / f"{out_dir.name}.inter")
    return {"source": str(src), "sha256": got}
