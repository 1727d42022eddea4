"""Fetch the paper's Amazon datasets as MMRec publishes them, from its public Google Drive folder.

`build(out_dir, ...)` is the `builder` of `conf/dataset/{baby,sports,clothing}.yaml`:
1. files already placed by hand in `out_dir` are verified in place (and the folder marked
   complete) instead of downloaded;
2. otherwise the shared folder is listed, the dataset's files (its subfolder, or a
   `<name>.zip`) are downloaded with a progress bar into a temporary folder beside `out_dir`,
   verified (`src.data.verify`: format, feature shapes/dtypes, the paper's Table 1), and only
   then moved into place; a failed or rejected download leaves nothing behind;
3. when Drive cannot be reached, the error says which files to put where by hand.
The network client is `GdownClient` (gdown, imported on first use) unless another object with
the same two methods is passed, which is how the tests replace the network.
"""
from __future__ import annotations

import json
import logging
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from src.data.formats import DatasetError, file_digest
from src.data.prepare.common import COMPLETE_MARKER, atomic_dataset_dir, log_to_file
from src.data.verify import FAIL, WARN, verify_dataset

log = logging.getLogger(__name__)

# MMRec's data/README.md: "Download from Google Drive: Baby/Sports/Elec" (Clothing added later).
MMREC_DRIVE_FOLDER = "https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG"
OPTIONAL_FILES = ("u_id_mapping.csv", "i_id_mapping.csv")
STAGING = ".download"


class DriveUnreachable(DatasetError):
    """The network or Google Drive could not be reached (or refused the request)."""


@dataclass(frozen=True)
class RemoteFile:
    id: str
    path: str  # "/"-separated path inside the shared folder, e.g. "baby/baby.inter"

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


class DriveClient(Protocol):
    def list_folder(self, url: str) -> list[RemoteFile]: ...

    def download(self, file: RemoteFile, output: Path) -> None: ...


class GdownClient:
    """Google Drive through gdown; network failures become `DriveUnreachable`."""

    def __init__(self, quiet: bool = False, timeout: float = 60.0, retries: int = 2):
        self.quiet, self.timeout, self.retries = quiet, timeout, retries

    @staticmethod
    def _modules():
        try:
            import gdown
            import requests
        except ImportError:
            raise DatasetError("downloading the Amazon datasets needs gdown (in requirements.txt): "
                               "pip install gdown==6.5.1") from None
        return gdown, (requests.exceptions.RequestException, gdown.exceptions.DownloadError)

    def list_folder(self, url: str) -> list[RemoteFile]:
        gdown, errors = self._modules()
        try:
            entries = gdown.download_folder(url=url, skip_download=True, quiet=self.quiet, timeout=self.timeout)
        except errors as e:
            raise DriveUnreachable(f"{type(e).__name__}: {e}") from None
        return [RemoteFile(e.id, str(e.path).replace("\\", "/")) for e in entries or []]

    def download(self, file: RemoteFile, output: Path) -> None:
        gdown, errors = self._modules()
        try:  # gdown draws a progress bar on stderr unless quiet
            gdown.download(id=file.id, output=str(output), quiet=self.quiet, timeout=self.timeout,
                           retries=self.retries)
        except errors as e:
            raise DriveUnreachable(f"{type(e).__name__} while fetching {file.path}: {e}") from None
        if not Path(output).is_file():
            raise DriveUnreachable(f"gdown returned without writing {output} ({file.path})")


def manual_help(name: str, out_dir: Path, required: list[str], folder_url: str, subfolder: str) -> str:
    """What to download and where to put it when the download cannot run here."""
    lines = [f"Get the '{name}' files by hand from MMRec's shared folder",
             f"    {folder_url}",
             f"(subfolder '{subfolder}', or the archive {subfolder}.zip), and place them as:"]
    lines += [f"    {out_dir / f}" for f in required]
    lines += [f"({' and '.join(OPTIONAL_FILES)} beside them if the folder has them.) Then run "
              f"`make data DATASET={name}` again: it verifies hand-placed files and marks the folder complete "
              f"(`make verify DATASET={name}` only checks them).",
              f"Or build the dataset from McAuley's raw Amazon 2014 files: python src/prepare_data.py "
              f"source=amazon2014 name={name} raw_dir=<folder with ratings_*.csv, meta_*.json.gz, "
              f"image_features_*.b>"]
    return "\n".join(lines)


def select_files(entries: list[RemoteFile], subfolder: str, wanted: list[str]) -> tuple[list[RemoteFile], bool]:
    """The entries to fetch for one dataset, and whether they are a zip archive to unpack.

    In order of preference: the wanted file names inside a folder called `subfolder` (any depth,
    any case); a `<subfolder>.zip`; the wanted names anywhere when each occurs once."""
    sub = subfolder.lower()
    in_sub = [e for e in entries if e.name in wanted and PurePosixPath(e.path).parent.name.lower() == sub]
    if in_sub:
        return in_sub, False
    zips = [e for e in entries if e.name.lower() == f"{sub}.zip"]
    if len(zips) == 1:
        return zips, True
    anywhere = [e for e in entries if e.name in wanted]
    names = [e.name for e in anywhere]
    if anywhere and len(set(names)) == len(names):
        return anywhere, False
    return [], False


def _collect(staging: Path, dest: Path, filenames: list[str], optional: tuple[str, ...]) -> list[str]:
    """Move each named file found (once) under `staging` into `dest`; returns the missing required ones."""
    missing = []
    for fname in [*filenames, *optional]:
        found = sorted(staging.rglob(fname))
        if len(found) > 1:
            raise DatasetError(f"the download holds {len(found)} files named {fname} "
                               f"({', '.join(str(p.relative_to(staging)) for p in found[:4])}); expected one")
        if found:
            shutil.move(str(found[0]), dest / fname)
        elif fname in filenames:
            missing.append(fname)
    return missing


def _verify_in_place(out_dir: Path, name: str, modalities: dict, expected, strict: bool) -> dict:
    report = verify_dataset(out_dir, name, modalities, expected=expected, stats_status=FAIL if strict else WARN)
    log.info("verification of the hand-placed files:\n%s", report)
    if not report.ok:
        raise DatasetError(f"{out_dir}: the files placed there failed verification; fix them, "
                           f"or remove the folder to download it again:\n{report}")
    (out_dir / COMPLETE_MARKER).touch()
    log.info("%s: hand-placed files verified and marked complete", out_dir)
    return {"source": "hand-placed", **report.stats}


def build(out_dir: str | Path, *, modalities: Mapping[str, str], folder_url: str = MMREC_DRIVE_FOLDER,
          subfolder: str | None = None, expected: object = "paper", strict: bool = True,
          client: DriveClient | None = None) -> dict:
    """Fetch dataset `out_dir.name` (`<name>.inter` and the `modalities` files) into `out_dir`.

    `subfolder`: the dataset's folder (or `<subfolder>.zip`) inside the shared folder (default:
    the dataset name). `expected`: statistics for `verify_dataset` (`"paper"`: Table 1).
    `strict`: a statistics mismatch rejects the download (else it is only reported)."""
    out_dir = Path(out_dir)
    name = out_dir.name
    subfolder = subfolder or name
    modalities = dict(modalities)
    required = [f"{name}.inter", *modalities.values()]

    present = [f for f in required if (out_dir / f).is_file()]
    if present and len(present) == len(required):
        return _verify_in_place(out_dir, name, modalities, expected, strict)
    if out_dir.exists() and any(out_dir.iterdir()):
        missing = [f for f in required if f not in present]
        raise DatasetError(f"{out_dir} exists but lacks {', '.join(missing)}; complete it by hand or remove "
                           f"it so that the download can create it.\n"
                           + manual_help(name, out_dir, required, folder_url, subfolder))

    client = client or GdownClient()
    try:
        entries = client.list_folder(folder_url)
    except DriveUnreachable as e:
        raise DriveUnreachable(f"cannot reach Google Drive ({e}).\n"
                               + manual_help(name, out_dir, required, folder_url, subfolder)) from None
    to_fetch, is_zip = select_files(entries, subfolder, required + list(OPTIONAL_FILES))
    if not to_fetch or (not is_zip and not set(required) <= {e.name for e in to_fetch}):
        listing = ", ".join(e.path for e in entries[:30]) or "nothing"
        raise DatasetError(f"the shared folder {folder_url} has no complete '{subfolder}' dataset "
                           f"(needed: {', '.join(required)}); it lists: {listing}\n"
                           + manual_help(name, out_dir, required, folder_url, subfolder))

    with atomic_dataset_dir(out_dir) as tmp, log_to_file(tmp / "prepare.log"):
        staging = tmp / STAGING
        staging.mkdir()
        log.info("downloading '%s' from %s: %s", name, folder_url, ", ".join(e.path for e in to_fetch))
        for entry in to_fetch:
            target = staging / entry.name
            try:
                client.download(entry, target)
            except DriveUnreachable as e:
                raise DriveUnreachable(f"the download of {entry.path} failed ({e}).\n"
                                       + manual_help(name, out_dir, required, folder_url, subfolder)) from None
            log.info("fetched %s (%s bytes, sha256 %s)", entry.path, f"{target.stat().st_size:,}",
                     file_digest(target))
            if is_zip:
                try:
                    with zipfile.ZipFile(target) as zf:
                        zf.extractall(staging / "unpacked")  # zipfile drops absolute and '..' parts
                except zipfile.BadZipFile as e:
                    raise DatasetError(f"{entry.path}: not a readable zip archive ({e})") from None
                target.unlink()
        missing = _collect(staging, tmp, required, OPTIONAL_FILES)
        if missing:
            raise DatasetError(f"the downloaded files lack {', '.join(missing)} (needed: {', '.join(required)})")
        shutil.rmtree(staging)

        report = verify_dataset(tmp, name, modalities, expected=expected,
                                stats_status=FAIL if strict else WARN)
        report.root = out_dir  # checked in the temporary folder, shown under its final name
        log.info("verification:\n%s", report)
        if not report.ok:
            raise DatasetError(f"the downloaded '{name}' files failed verification, so nothing was written to "
                               f"{out_dir}:\n{report}")
        sums = {p.name: file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != "prepare.log"}
        (tmp / "SHA256SUMS").write_text("".join(f"{h}  {f}\n" for f, h in sums.items()))
        stats = {"source": folder_url, "files": [e.path for e in to_fetch], **report.stats}
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    log.info("'%s' downloaded and verified into %s", name, out_dir)
    return stats
