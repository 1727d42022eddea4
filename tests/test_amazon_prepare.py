"""src/data/prepare/amazon.py end to end on small raw files written here in the releases'
exact formats (2014: headerless ratings CSV, gzipped Python-literal metadata, binary `.b`
image features; 2018: JSON-lines reviews and metadata), checked against a plain-Python
re-implementation of MMRec's notebook steps."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.formats import DatasetError, load_dataset
from src.data.prepare.amazon import build

ROOT = Path(__file__).resolve().parents[1]
CAT = "Baby"
DIM = 4096


# ---------------------------------------------------------------------------- raw files
def fake_encoder(sentences: list[str]) -> np.ndarray:
    """A deterministic stand-in for MiniLM: a 384-d vector seeded by the sentence's hash."""
    return np.stack([np.random.default_rng(int(hashlib.sha256(s.encode()).hexdigest()[:12], 16))
                     .standard_normal(384).astype(np.float32) for s in sentences])


@dataclass
class Raw:
    dir: Path
    rows: list            # (user, item, rating, timestamp or None) in file order
    kept: list = field(default_factory=list)   # the reference's surviving rows
    no_meta: str = ""      # kept item without a metadata line
    no_image: str = ""     # kept item without an image record
    empty_cat: str = ""    # kept item whose categories are []
    fixed: str = ""        # kept item whose first metadata line is malformed (a good one follows)
    twice: str = ""        # kept item with two image records (the last one counts)
    vectors: dict = field(default_factory=dict)  # asin -> the image vector that counts
    image_records: list = field(default_factory=list)  # (asin, vector) as written
    meta: dict = field(default_factory=dict)


def reference_rows(rows: list, k: int = 5) -> list:
    """MMRec's notebook steps in plain Python: drop rows without a timestamp and exact
    duplicates, keep each (user, item) pair's earliest row, then iterative k-core."""
    seen, dedup = set(), []
    for r in rows:
        if r[3] is None or (r[0], r[1], r[3]) in seen:
            continue
        seen.add((r[0], r[1], r[3]))
        dedup.append(r)
    best = {}
    for idx, r in enumerate(dedup):
        if (r[0], r[1]) not in best or r[3] < dedup[best[(r[0], r[1])]][3]:
            best[(r[0], r[1])] = idx
    kept = [r for idx, r in enumerate(dedup) if best[(r[0], r[1])] == idx]
    while True:
        uc, ic = Counter(r[0] for r in kept), Counter(r[1] for r in kept)
        new = [r for r in kept if uc[r[0]] >= k and ic[r[1]] >= k]
        if len(new) == len(kept):
            return kept
        kept = new


def first_seen(values) -> list:
    return list(dict.fromkeys(values))


def mmrec_counts(n: int) -> list[int]:
    """Train/valid/test sizes of one user with n interactions (1splitting.ipynb)."""
    if n < 10:
        return [n - 2, 1, 1]
    held = int(n * 0.2)
    return [n - held, held // 2, held - held // 2]


def meta_record(asin: str, k: int) -> dict:
    rec = {"asin": asin, "title": f"Title {k}", "price": 9.99, "imUrl": f"http://ecx.images-amazon.com/{asin}.jpg",
           "related": {"also_bought": ["B000000XYZ"]}, "salesRank": {"Baby": 100 + k},
           "categories": [["Baby", "Feeding", f"Bottles {k}"], ["Other", "Ignored"]]}
    if k % 4 != 1:
        rec["brand"] = f"Brand{k}"
    if k % 5 != 2:
        rec["description"] = f"Soft item {k}.\nWarm and \"safe\", mom's pick."
    return rec


def sentence_of(rec: dict) -> str:
    """The expected MiniLM input, written out the way 3feat-encoder.ipynb builds it."""
    cats = rec["categories"][0] if rec["categories"] else []
    s = rec["title"] + " " + rec.get("brand", " ") + " " + "".join(c + " " for c in cats) + rec.get("description", " ")
    return s.replace("\n", " ")


def write_image_file(path: Path, records: list) -> None:
    """Records of a 10-byte ASIN followed by 4096 little-endian float32."""
    with open(path, "wb") as f:
        for asin, vec in records:
            assert len(asin.encode("ascii")) == 10
            f.write(asin.encode("ascii") + np.asarray(vec, dtype="<f4").tobytes())


def make_raw_2014(raw_dir: Path, seed: int = 0, n_users: int = 45, n_items: int = 22) -> Raw:
    rng = np.random.default_rng(seed)
    users = [f"A{n:03d}XQ7RTZ2M9K" for n in range(n_users)]
    items = ["0000031852"] + [f"B00{n:07d}" for n in range(1, n_items)]  # an ISBN-style ASIN with leading zeros
    weight = 1.0 / np.arange(1, len(items) + 1) ** 0.7
    rows = []
    for u in users:
        degree = int(rng.integers(2, 12))
        for i in rng.choice(len(items), size=degree, replace=False, p=weight / weight.sum()):
            rows.append((u, items[i], float(rng.integers(1, 6)), int(rng.integers(1_300_000_000, 1_400_000_000))))
    # a rare item (4 ratings) whose loss takes a 5-rating user below the core in a second round
    cascade = "ACASCADE0USER1"
    rows += [(u, "B00RARE001", 5.0, 1_350_000_000 + n) for n, u in enumerate(users[:3] + [cascade])]
    rows += [(cascade, items[n], 4.0, 1_360_000_000 + n) for n in range(4)]
    rows.sort(key=lambda r: r[1])  # the real files come sorted by item
    rows.insert(7, rows[5])  # an exact duplicate
    u, i, r, t = rows[20]
    rows.insert(30, (u, i, 2.0, t - 86400 * 900))  # the same pair again, earlier: that row is kept
    rows.insert(12, (users[0], items[3], 4.0, None))  # no timestamp
    raw = Raw(raw_dir, rows)
    raw.kept = reference_rows(rows)
    kept_items = first_seen(r[1] for r in raw.kept)
    assert len(kept_items) >= 8 and len(raw.kept) >= 150, "fixture too small after the 5-core"
    assert "B00RARE001" not in kept_items and cascade not in {r[0] for r in raw.kept}
    raw.no_meta, raw.no_image, raw.empty_cat, raw.fixed, raw.twice = kept_items[1:6]

    raw_dir.mkdir(parents=True, exist_ok=True)
    with open(raw_dir / f"ratings_{CAT}.csv", "w") as f:
        for u, i, r, t in rows:
            f.write(f"{u},{i},{r},{'' if t is None else t}\n")

    foreign = ["B0FOREIGN1", "B0FOREIGN2"]
    lines = []
    for k, asin in enumerate(items + foreign):
        if asin == raw.no_meta:
            continue
        rec = meta_record(asin, k)
        if asin == raw.empty_cat:
            rec["categories"] = []
        raw.meta[asin] = rec
        if asin == raw.fixed:  # a cut-off line first, then the good one
            lines.append(repr(rec)[:40])
            # eval() would run this; a safe parser must reject it
            lines.append("{'asin': '%s', 'title': __import__('pathlib').Path(%r).touch()}"
                         % (asin, str(raw_dir / "EVALUATED")))
        lines.append(repr(rec))
    lines.insert(3, "this line is not a record")
    with gzip.open(raw_dir / f"meta_{CAT}.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    records = []
    for asin in items + foreign:
        if asin == raw.no_image:
            continue
        vec = rng.gamma(1.0, 1.0, size=DIM).astype(np.float32)
        if asin == raw.twice:
            records.append((asin, np.full(DIM, 7.0, dtype=np.float32)))  # superseded by the next one
        records.append((asin, vec))
        raw.vectors[asin] = vec
    order = rng.permutation(len(records))
    raw.image_records = [records[j] for j in order]
    # keep the superseded record before its replacement after shuffling
    pos = [n for n, (a, _) in enumerate(raw.image_records) if a == raw.twice]
    a, b = raw.image_records[pos[0]], raw.image_records[pos[1]]
    if a[1][0] != 7.0:
        raw.image_records[pos[0]], raw.image_records[pos[1]] = b, a
    write_image_file(raw_dir / f"image_features_{CAT}.b", raw.image_records)
    return raw


@pytest.fixture
def raw(tmp_path) -> Raw:
    return make_raw_2014(tmp_path / "raw")


def prepare(raw: Raw, out: Path, **kw) -> dict:
    kw.setdefault("text_encoder", fake_encoder)
    return build(out, raw_dir=raw.dir, category=CAT, **kw)


def read_out(out: Path):
    name = out.name
    df = pd.read_csv(out / f"{name}.inter", sep="\t")
    u_map = pd.read_csv(out / "u_id_mapping.csv", sep="\t", dtype={"user_id": str})
    i_map = pd.read_csv(out / "i_id_mapping.csv", sep="\t", dtype={"asin": str})
    return df, u_map, i_map


# ---------------------------------------------------------------------------- 2014, end to end
def test_end_to_end_matches_the_reference(raw, tmp_path):
    out = tmp_path / "data" / "tinybaby"
    stats = prepare(raw, out, image_chunk_records=3)
    df, u_map, i_map = read_out(out)
    data = load_dataset(out, "tinybaby", {"image": "image_feat.npy", "text": "text_feat.npy"})

    # ids dense, in order of first appearance (pd.unique in 0rating2inter.ipynb)
    assert i_map["asin"].tolist() == first_seen(r[1] for r in raw.kept)
    assert u_map["user_id"].tolist() == first_seen(r[0] for r in raw.kept)
    assert i_map["itemID"].tolist() == list(range(len(i_map))) and data.n_items == len(i_map)
    assert "0000031852" in set(i_map["asin"])  # leading zeros survive

    # the same rows as the reference (earliest row of the repeated pair, ratings and times intact)
    got = {(u_map["user_id"][u], i_map["asin"][i], r, t) for u, i, r, t in
           df[["userID", "itemID", "rating", "timestamp"]].itertuples(index=False)}
    assert got == set(raw.kept) and len(df) == len(raw.kept)
    assert stats["exact_duplicates"] == 1 and stats["repeated_pairs"] == 1 and stats["rows_missing_fields"] == 1

    # 5-core holds, and MMRec's per-user split sizes
    assert np.bincount(df["userID"]).min() >= 5 and np.bincount(df["itemID"]).min() >= 5
    for _, g in df.groupby("userID"):
        assert np.bincount(g["x_label"], minlength=3).tolist() == mmrec_counts(len(g))

    # image rows: the record's vector; the last of two records; the mean for the item without one
    image = np.load(out / "image_feat.npy")
    assert image.dtype == np.float32 and image.shape == (len(i_map), DIM)
    row = dict(zip(i_map["asin"], i_map["itemID"]))
    for asin in i_map["asin"]:
        if asin != raw.no_image:
            np.testing.assert_array_equal(image[row[asin]], raw.vectors[asin])
    kept = set(i_map["asin"])
    kept_records = np.array([v for a, v in raw.image_records if a in kept], dtype=np.float64)
    np.testing.assert_allclose(image[row[raw.no_image]], kept_records.mean(axis=0), rtol=1e-6)
    assert (out / "missed_img_itemIDs.csv").read_text().split() == [str(row[raw.no_image])]

    # text rows: the notebook's sentence; the mean for the item without metadata
    text = np.load(out / "text_feat.npy")
    assert text.shape == (len(i_map), 384)
    for asin in (raw.fixed, raw.twice, i_map["asin"][0]):
        np.testing.assert_array_equal(text[row[asin]], fake_encoder([sentence_of(raw.meta[asin])])[0])
    assert sentence_of(raw.meta[raw.empty_cat]).startswith(raw.meta[raw.empty_cat]["title"] + " Brand")
    np.testing.assert_array_equal(text[row[raw.empty_cat]], fake_encoder([sentence_of(raw.meta[raw.empty_cat])])[0])
    others = np.delete(text, row[raw.no_meta], axis=0).astype(np.float64)
    np.testing.assert_allclose(text[row[raw.no_meta]], others.mean(axis=0), rtol=1e-5, atol=1e-7)

    # every choice is in prepare.log; the dangerous line was never evaluated
    log = (out / "prepare.log").read_text()
    for needle in ("skipped 3 malformed line(s)", "line 4: no 'asin' key", raw.no_meta,
                   "get the mean text vector", "1 kept item(s) have an empty or missing category path",
                   "1 get the mean vector", "1 repeated record(s)", "exact duplicate", "earliest row is kept",
                   "RESULT: OK", "skip  statistics"):
        assert needle in log, needle
    assert not (raw.dir / "EVALUATED").exists()
    saved = json.loads((out / "stats.json").read_text())
    assert saved["n_interactions"] == len(raw.kept) and saved["items_without_image"] == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["tinybaby"]


def test_chunk_size_does_not_change_the_image_features(raw, tmp_path):
    prepare(raw, tmp_path / "a" / "x", image_chunk_records=1)
    prepare(raw, tmp_path / "b" / "x", image_chunk_records=10_000)
    assert (tmp_path / "a/x/image_feat.npy").read_bytes() == (tmp_path / "b/x/image_feat.npy").read_bytes()


def test_truncated_image_record(raw, tmp_path):
    with open(raw.dir / f"image_features_{CAT}.b", "ab") as f:
        f.write(b"B00TRUNC01" + b"\x00" * 100)
    out = tmp_path / "data" / "x"
    with pytest.raises(DatasetError, match="incomplete download") as err:
        prepare(raw, out)
    assert "110 bytes" in str(err.value)
    assert not out.parent.exists() or not any(out.parent.iterdir())
    prepare(raw, out, truncated_image_record="skip")
    assert "it is ignored (truncated_image_record=skip)" in (out / "prepare.log").read_text()


def test_missing_metadata_policies(raw, tmp_path):
    with pytest.raises(DatasetError, match=f"no metadata for 1 kept item.*{raw.no_meta}"):
        prepare(raw, tmp_path / "e" / "x", missing_meta="error")
    out = tmp_path / "d" / "x"
    prepare(raw, out, missing_meta="drop")
    df, u_map, i_map = read_out(out)
    assert raw.no_meta not in set(i_map["asin"])
    expected = reference_rows([r for r in raw.rows if r[1] != raw.no_meta])
    assert len(df) == len(expected) and set(i_map["asin"]) == {r[1] for r in expected}
    assert np.bincount(df["userID"]).min() >= 5 and np.bincount(df["itemID"]).min() >= 5
    assert "missing_meta=drop" in (out / "prepare.log").read_text()


def test_bad_raw_inputs_give_clear_errors(raw, tmp_path):
    ratings = raw.dir / f"ratings_{CAT}.csv"
    good = ratings.read_text()
    with pytest.raises(DatasetError, match="no interaction survives the 50-core"):
        prepare(raw, tmp_path / "o" / "x", k=50)

    lines = good.splitlines()
    lines[9] = lines[9].rsplit(",", 2)[0] + ",five,1300000000"
    ratings.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 10: rating is 'five'"):
        prepare(raw, tmp_path / "o" / "x")

    ratings.write_text("")
    with pytest.raises(DatasetError, match="no interactions; the category is empty"):
        prepare(raw, tmp_path / "o" / "x")
    ratings.write_text(good)

    (raw.dir / f"image_features_{CAT}.b").rename(raw.dir / "elsewhere.b")
    with pytest.raises(DatasetError, match=r"no image feature file; expected one of \['image_features_Baby.b'\]"):
        prepare(raw, tmp_path / "o" / "x")
    write_image_file(raw.dir / f"image_features_{CAT}.b", [("B0FOREIGN1", np.ones(DIM))])
    with pytest.raises(DatasetError, match="none of its 1 records belongs"):
        prepare(raw, tmp_path / "o" / "x")

    meta = raw.dir / f"meta_{CAT}.json.gz"
    with gzip.open(meta, "wt") as f:
        f.write("\n".join(f"garbage {n}" for n in range(40)) + "\n")
    with pytest.raises(DatasetError, match="40 of 40 lines are not valid metadata"):
        prepare(raw, tmp_path / "o" / "x")
    meta.unlink()
    with pytest.raises(DatasetError, match="no metadata file"):
        prepare(raw, tmp_path / "o" / "x")
    with pytest.raises(DatasetError, match="no ratings_Toys.csv|ratings_Toys.csv"):
        build(tmp_path / "o" / "x", raw_dir=raw.dir, category="Toys", text_encoder=fake_encoder)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ---------------------------------------------------------------------------- 2018 release
def test_2018_json_lines_release(tmp_path):
    raw = make_raw_2014(tmp_path / "raw14")  # same interactions, rewritten in the 2018 formats
    d = tmp_path / "raw18"
    d.mkdir()
    with gzip.open(d / "Toys_and_Games.json.gz", "wt") as f:
        for n, (u, i, r, t) in enumerate(raw.rows):
            if t is None:
                continue
            rec = {"overall": r, "verified": True, "reviewTime": "01 1, 2014", "reviewerID": u, "asin": i,
                   "reviewerName": "x", "reviewText": "ok", "summary": "ok", "unixReviewTime": t}
            f.write(json.dumps(rec) + "\n")
            if n == 4:
                f.write('{"overall": 5.0, "reviewerID": "broken\n')
    with gzip.open(d / "meta_Toys_and_Games.json.gz", "wt") as f:
        for asin, rec in raw.meta.items():
            f.write(json.dumps({"asin": asin, "title": rec["title"], "brand": rec.get("brand", ""),
                                "category": ["Toys & Games", "Puzzles"], "description": ["Part one.", "Part\ntwo."],
                                "imageURL": [], "also_buy": []}) + "\n")
    out = tmp_path / "data" / "toys"
    stats = build(out, raw_dir=d, category="Toys_and_Games", release="2018", text_encoder=fake_encoder)
    assert stats["modalities"] == {"text": "text_feat.npy"} and not (out / "image_feat.npy").exists()
    df, u_map, i_map = read_out(out)
    assert len(df) == len(raw.kept)
    assert set(i_map["asin"]) == {r[1] for r in raw.kept}  # same 5-core as the 2014 files
    asin = raw.fixed
    rec = raw.meta[asin]
    want = f"{rec['title']} {rec.get('brand') or ' '} Toys & Games Puzzles Part one. Part two."
    row = dict(zip(i_map["asin"], i_map["itemID"]))[asin]
    np.testing.assert_array_equal(np.load(out / "text_feat.npy")[row], fake_encoder([want])[0])
    log = (out / "prepare.log").read_text()
    assert "skipped 1 malformed line(s)" in log and "text modality only" in log
    assert "dataset.name=toys" in log  # how to train on a dataset without a config of its own


# ---------------------------------------------------------------------------- command line, MiniLM, training
def test_command_line_with_the_real_text_encoder(raw, tmp_path):
    from src.data.prepare.text import encode_sentences

    cmd = [sys.executable, str(ROOT / "src" / "prepare_data.py"), "source=amazon2014", f"category={CAT}",
           f"raw_dir={raw.dir}", "name=tinybaby", f"paths.data_dir={tmp_path / 'data'}"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "data" / "tinybaby"
    _, _, i_map = read_out(out)
    text = np.load(out / "text_feat.npy")
    row = dict(zip(i_map["asin"], i_map["itemID"]))
    picks = [raw.fixed, raw.empty_cat]
    want, _ = encode_sentences([sentence_of(raw.meta[a]) for a in picks])
    np.testing.assert_allclose(text[[row[a] for a in picks]], want, atol=2e-5)
    assert np.allclose(np.linalg.norm(text, axis=1)[[row[a] for a in picks]], 1.0, atol=1e-4)

    check = [sys.executable, str(ROOT / "src" / "prepare_data.py"), "verify_only=true", "name=tinybaby",
             f"paths.data_dir={tmp_path / 'data'}"]
    run = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "RESULT: OK" in run.stdout, run.stdout + run.stderr


def test_a_model_trains_on_the_prepared_dataset(tmp_path):
    # the harness ranks top-50 lists, so this set needs more than 50 items after the 5-core
    raw = make_raw_2014(tmp_path / "raw", seed=1, n_users=160, n_items=64)
    data_dir = tmp_path / "data"
    prepare(raw, data_dir / "tinybaby")
    assert len(pd.read_csv(data_dir / "tinybaby" / "i_id_mapping.csv", sep="\t")) > 50
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), "model=mf", "dataset=baby", "dataset.name=tinybaby",
           f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'out'}", "trainer.max_epochs=2",
           "trainer.accelerator=cpu", "logger=none", "dataset.train_batch_size=64"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = list((tmp_path / "out").rglob("metrics.json"))
    assert len(metrics) == 1
    result = json.loads(metrics[0].read_text())
    assert result["epochs"] >= 1 and 0.0 <= result["test"]["recall@20"] <= 1.0
