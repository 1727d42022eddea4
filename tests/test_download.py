"""src/data/prepare/download.py with the network replaced by a local folder shaped like
MMRec's Google Drive folder: the dataset lands only after verification, nothing is left
behind on failure, and a connection failure explains the manual placement."""
from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from src.data.formats import DatasetError, file_digest
from src.data.prepare.download import DriveUnreachable, GdownClient, RemoteFile, build
from src.data.verify import DatasetStats
from tests.test_verify import DIMS, MODALITIES, make_dataset

ROOT = Path(__file__).resolve().parents[1]
URL = "https://drive.google.com/drive/folders/FAKEFOLDER"
gdown = pytest.importorskip("gdown")
requests = pytest.importorskip("requests")


class LocalDrive:
    """A DriveClient serving the files of a local folder (file id = its relative path)."""

    def __init__(self, root: Path, fail_on_download: int | None = None):
        self.root, self.fail_on_download, self.downloads = root, fail_on_download, []

    def list_folder(self, url: str) -> list[RemoteFile]:
        assert url == URL
        return [RemoteFile(f"id:{p.relative_to(self.root).as_posix()}", p.relative_to(self.root).as_posix())
                for p in sorted(self.root.rglob("*")) if p.is_file()]

    def download(self, file: RemoteFile, output: Path) -> None:
        if self.fail_on_download is not None and len(self.downloads) == self.fail_on_download:
            raise DriveUnreachable("connection reset")
        self.downloads.append(file.path)
        shutil.copyfile(self.root / file.id.removeprefix("id:"), output)


@pytest.fixture
def drive(tmp_path):
    """A fake shared folder: baby/ (the wanted set), sports/ (same file names), a README."""
    root = tmp_path / "drive"
    stats = make_dataset(root / "baby", name="baby")
    make_dataset(root / "sports", name="sports", n_users=25, n_items=18, seed=3)
    (root / "README.txt").write_text("MMRec data\n")
    return root, stats


def fetch(out: Path, stats: DatasetStats, client, **kw) -> dict:
    return build(out, modalities=MODALITIES, folder_url=URL, expected=stats, client=client, **kw)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_download_into_place_after_verification(drive, tmp_path, monkeypatch):
    root, stats = drive
    # the fake folder's features are narrower than the paper's: compare with its own widths
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    out = tmp_path / "data" / "baby"
    client = LocalDrive(root)
    result = fetch(out, stats, client)
    assert sorted(client.downloads) == ["baby/baby.inter", "baby/i_id_mapping.csv", "baby/image_feat.npy",
                                        "baby/text_feat.npy"]  # never sports/
    for f in ("baby.inter", "image_feat.npy", "text_feat.npy", "i_id_mapping.csv"):
        assert file_digest(out / f) == file_digest(root / "baby" / f)
    assert (out / ".complete").is_file() and (out / "prepare.log").is_file()
    sums = dict(line.split()[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert sums["baby.inter"] == file_digest(root / "baby" / "baby.inter")
    assert not (out / ".download").exists()
    assert leftovers(out.parent) == ["baby"]  # no temporary folder left
    assert result["interactions"] == stats.interactions
    assert "RESULT: OK" in (out / "prepare.log").read_text()


def test_zip_archive_layout(drive, tmp_path, monkeypatch):
    root, stats = drive
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    zipped = tmp_path / "drive_zip"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "baby.zip", "w") as zf:
        for p in (root / "baby").iterdir():
            zf.write(p, f"baby/{p.name}")
    out = tmp_path / "data" / "baby"
    fetch(out, stats, LocalDrive(zipped))
    assert file_digest(out / "image_feat.npy") == file_digest(root / "baby" / "image_feat.npy")
    assert leftovers(out.parent) == ["baby"] and not (out / "baby.zip").exists()


def test_rejected_download_leaves_nothing(drive, tmp_path, monkeypatch):
    root, stats = drive
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    feat = np.load(root / "baby" / "text_feat.npy")
    feat[2] = np.nan
    np.save(root / "baby" / "text_feat.npy", feat)
    out = tmp_path / "data" / "baby"
    with pytest.raises(DatasetError, match="failed verification") as err:
        fetch(out, stats, LocalDrive(root))
    assert "FAIL  text_feat.npy" in str(err.value) and "NaN" in str(err.value)
    assert leftovers(out.parent) == []


def test_statistics_mismatch_rejected_unless_not_strict(drive, tmp_path, monkeypatch):
    root, stats = drive
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    out = tmp_path / "data" / "baby"
    with pytest.raises(DatasetError, match="Table 1"):  # compared with the paper's Baby statistics
        build(out, modalities=MODALITIES, folder_url=URL, client=LocalDrive(root))
    assert leftovers(out.parent) == []
    build(out, modalities=MODALITIES, folder_url=URL, client=LocalDrive(root), strict=False)
    assert "warn  Table 1" in (out / "prepare.log").read_text()


def test_connection_lost_mid_download_leaves_nothing(drive, tmp_path):
    root, stats = drive
    out = tmp_path / "data" / "baby"
    with pytest.raises(DriveUnreachable, match="place them as"):
        fetch(out, stats, LocalDrive(root, fail_on_download=2))
    assert leftovers(out.parent) == []


def manual_message_ok(message: str, out: Path) -> None:
    for f in ("baby.inter", "image_feat.npy", "text_feat.npy"):
        assert str(out / f) in message
    assert URL in message and "subfolder 'baby'" in message


def test_no_network_gdown_error_gives_manual_placement(tmp_path, monkeypatch):
    def offline(*args, **kwargs):  # what gdown raises when the host does not resolve
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download_folder", offline)
    monkeypatch.setattr(gdown, "download", offline)
    out = tmp_path / "data" / "baby"
    with pytest.raises(DriveUnreachable) as err:
        build(out, modalities=MODALITIES, folder_url=URL, client=GdownClient(quiet=True))
    message = str(err.value)
    assert "cannot reach Google Drive (ConnectionError" in message
    manual_message_ok(message, out)
    assert not out.exists() and leftovers(out.parent) == []


def test_gdown_adapter_with_local_copies(drive, tmp_path, monkeypatch):
    """The real GdownClient, with gdown's two network functions replaced by local copies."""
    root, stats = drive
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    calls = []
    from gdown.download import GoogleDriveFileToDownload  # the type gdown's listing returns

    def download_folder(url=None, skip_download=False, **kw):
        assert url == URL and skip_download
        return [GoogleDriveFileToDownload(id=f"ID{n}", path=p.relative_to(root).as_posix(),
                                          local_path=str(p))
                for n, p in enumerate(sorted(root.rglob("*"))) if p.is_file()]

    by_id = {f"ID{n}": p for n, p in enumerate(sorted(root.rglob("*"))) if p.is_file()}

    def download(id=None, output=None, quiet=False, **kw):
        calls.append((id, quiet))
        shutil.copyfile(by_id[id], output)
        return output

    monkeypatch.setattr(gdown, "download_folder", download_folder)
    monkeypatch.setattr(gdown, "download", download)
    out = tmp_path / "data" / "baby"
    fetch(out, stats, GdownClient())
    assert len(calls) == 4 and all(q is False for _, q in calls)  # progress bars on
    assert file_digest(out / "baby.inter") == file_digest(root / "baby" / "baby.inter")


def test_hand_placed_files_verified_in_place(drive, tmp_path, monkeypatch):
    root, stats = drive
    monkeypatch.setattr("src.data.verify.AMAZON_FEATURE_DIMS", DIMS)
    out = tmp_path / "data" / "baby"
    shutil.copytree(root / "baby", out)

    class NoNetwork:
        def list_folder(self, url):
            raise AssertionError("hand-placed files must not be downloaded again")

    result = fetch(out, stats, NoNetwork())
    assert result["source"] == "hand-placed" and (out / ".complete").is_file()

    (out / ".complete").unlink()
    np.save(out / "image_feat.npy", np.zeros((3, 64), dtype=np.float32))
    with pytest.raises(DatasetError, match="failed verification"):
        fetch(out, stats, NoNetwork())
    assert not (out / ".complete").exists()

    (out / "image_feat.npy").unlink()  # some files there, not all: never overwritten
    with pytest.raises(DatasetError, match="lacks image_feat.npy"):
        fetch(out, stats, NoNetwork())
    assert (out / "baby.inter").is_file()


def test_folder_without_the_dataset(drive, tmp_path):
    root, stats = drive
    shutil.rmtree(root / "baby")
    with pytest.raises(DatasetError, match="no complete 'baby' dataset") as err:
        fetch(tmp_path / "data" / "baby", stats, LocalDrive(root))
    assert "sports/sports.inter" in str(err.value)  # says what the folder holds


def test_prepare_data_offline_exit_status_and_message(tmp_path, monkeypatch, capsys):
    """`make data DATASET=baby` with no network: exit 2 and the manual-placement message."""
    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download_folder", offline)
    spec = importlib.util.spec_from_file_location("prepare_data_script", ROOT / "src" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dataset = OmegaConf.load(ROOT / "conf" / "dataset" / "baby.yaml")
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "force": False, "verify_only": False,
                            "source": None, "dataset": dataset})
    assert module.prepare(cfg) == 2
    err = capsys.readouterr().err
    manual_message_ok(err.replace("13cBy1EA_saTUuXxVllKgtfci2A09jyaG", "FAKEFOLDER"), tmp_path / "baby")
    assert "make data DATASET=baby" in err
    assert leftovers(tmp_path) == []
