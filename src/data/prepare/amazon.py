"""Build an MMRec-format dataset from McAuley's raw Amazon files (2014 or 2018 release).

Inputs, in `raw_dir` (`<C>` is the category as in the file names, e.g. `Baby`,
`Sports_and_Outdoors`, `Clothing_Shoes_and_Jewelry`):
- 2014: `ratings_<C>.csv` (user,item,rating,timestamp; no header), `meta_<C>.json.gz` (one
  Python-literal dict per line) and `image_features_<C>.b` (records of a 10-byte ASIN and
  4096 little-endian float32);
- 2018: `<C>.json.gz` (or the `<C>_5.json.gz` subset; one JSON review per line with
  `reviewerID`, `asin`, `overall`, `unixReviewTime`) and `meta_<C>.json.gz` (one JSON dict per
  line); the 2018 release has no image features, so an `image_features_<C>.b` is used when
  present and the dataset is text-only otherwise.

Steps, as MMRec's `preprocessing/` notebooks:
1. drop rows without user/item/timestamp and exact duplicates (`0rating2inter`); the MMRec
   format also needs each (user, item) pair once, so a pair rated at several times keeps its
   earliest row (logged; the paper's three sets have none);
2. iterative 5-core (users and items with fewer than 5 rows go together, repeat);
3. re-index users and items densely in order of first appearance (`pd.unique`, as the notebook);
4. MMRec's per-user random split (`1splitting`; seeded here, `common.mmrec_split`);
5. text: "title brand <first category path> description" (`3feat-encoder`, missing fields as a
   blank) encoded with all-MiniLM-L6-v2;
6. image: the `.b` vector of each kept item, streamed in fixed-size chunks; items without one
   get the mean of the kept items' vectors (`3feat-encoder`, "following LATTICE").
Raw-input problems and every choice made about them go to `prepare.log` in the dataset folder.
"""
from __future__ import annotations

import ast
import gzip
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.formats import DatasetError, file_digest
from src.data.prepare.common import (atomic_dataset_dir, kcore_filter, log_to_file, mmrec_split,
                                     remap_ids, save_npy, write_inter, write_table)
from src.data.prepare.text import TEXT_DIM, encode_sentences
from src.data.verify import WARN, verify_dataset

log = logging.getLogger(__name__)

IMAGE_DIM = 4096
ASIN_BYTES = 10
IMAGE_RECORD = np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (IMAGE_DIM,))])  # 16,394 bytes
KCORE = 5
SPLIT_SEED = 2026
# Malformed lines are skipped and logged; more than this share (and more than a handful)
# means the file is not what we think it is, and the build stops.
MAX_BAD_LINE_SHARE = 0.01
MAX_BAD_LINES_ALWAYS_OK = 10
# The paper's dataset names and the category in McAuley's file names.
PAPER_CATEGORIES = {"baby": "Baby", "sports": "Sports_and_Outdoors",
                    "clothing": "Clothing_Shoes_and_Jewelry"}
RELEASES = ("2014", "2018")
MISSING_META_POLICIES = ("mean", "drop", "error")
TRUNCATED_POLICIES = ("error", "skip")
_ASIN_RE = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]*)['"]""")


# ---------------------------------------------------------------------------- files
@dataclass(frozen=True)
class RawFiles:
    release: str
    category: str
    interactions: Path
    meta: Path
    image: Path | None


def default_name(category: str) -> str:
    """Dataset name for a category: the paper's name for its three, else the category lower-cased."""
    by_category = {c: n for n, c in PAPER_CATEGORIES.items()}
    return by_category.get(category, category.lower())


def _first_existing(raw_dir: Path, names: list[str]) -> Path | None:
    return next((raw_dir / n for n in names if (raw_dir / n).is_file()), None)


def _missing_file_error(raw_dir: Path, what: str, names: list[str]) -> DatasetError:
    present = sorted(p.name for p in raw_dir.iterdir()) if raw_dir.is_dir() else []
    shown = ", ".join(present[:12]) + (" ..." if len(present) > 12 else "") or "nothing"
    return DatasetError(f"{raw_dir}: no {what} file; expected one of {names}. The folder holds: {shown}")


def find_raw_files(raw_dir: str | Path, category: str, release: str,
                   require_image: bool | None = None) -> RawFiles:
    """Locate a category's raw files (`.gz` or uncompressed JSON alike). A short paper name
    (`Sports`, `clothing`) stands for its full category when the short one has no files."""
    raw_dir = Path(raw_dir)
    if release not in RELEASES:
        raise DatasetError(f"release is {release!r}; expected one of {RELEASES}")
    if not raw_dir.is_dir():
        raise DatasetError(f"raw_dir {raw_dir}: not a directory; expected the folder holding the "
                           f"downloaded Amazon {release} files")
    if require_image is None:
        require_image = release == "2014"
    candidates = [category]
    if category.lower() in PAPER_CATEGORIES and PAPER_CATEGORIES[category.lower()] != category:
        candidates.append(PAPER_CATEGORIES[category.lower()])
    for cat in candidates:
        if release == "2014":
            inter_names = [f"ratings_{cat}.csv"]
        else:
            inter_names = [f"{cat}.json.gz", f"{cat}.json", f"{cat}_5.json.gz", f"{cat}_5.json"]
        inter = _first_existing(raw_dir, inter_names)
        if inter is not None:
            break
    else:
        names = [f"ratings_{c}.csv" if release == "2014" else f"{c}.json.gz" for c in candidates]
        raise _missing_file_error(raw_dir, f"{release} interaction", names)
    if inter.name.startswith(f"{cat}_5."):
        log.info("using the 5-core review subset %s (no full review file %s.json.gz)", inter.name, cat)
    meta_names = [f"meta_{cat}.json.gz", f"meta_{cat}.json"]
    meta = _first_existing(raw_dir, meta_names)
    if meta is None:
        raise _missing_file_error(raw_dir, "metadata", meta_names)
    image = _first_existing(raw_dir, [f"image_features_{cat}.b"])
    if image is None and require_image:
        raise _missing_file_error(raw_dir, "image feature", [f"image_features_{cat}.b"])
    return RawFiles(release, cat, inter, meta, image)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


class _BadLines:
    """Counts skipped lines of one file, remembers the first few, and stops when too many."""

    def __init__(self, path: Path, what: str):
        self.path, self.what, self.lines, self.first = path, what, 0, []

    def add(self, line_no: int, reason: str) -> None:
        self.lines += 1
        if len(self.first) < 5:
            self.first.append(f"line {line_no}: {reason}")

    def finish(self, total: int) -> None:
        if not self.lines:
            return
        detail = "; ".join(self.first)
        if self.lines > max(MAX_BAD_LINES_ALWAYS_OK, MAX_BAD_LINE_SHARE * total):
            raise DatasetError(f"{self.path}: {self.lines} of {total} lines are not valid {self.what} "
                               f"({detail}); expected one record per line. Is this the right file?")
        log.warning("%s: skipped %d malformed line(s) of %d (%s)", self.path.name, self.lines, total, detail)


# ---------------------------------------------------------------------------- interactions
def read_ratings_csv(path: Path) -> pd.DataFrame:
    """2014 `ratings_<C>.csv`: `user,item,rating,timestamp`, no header. Ids stay strings
    (ASINs such as `0000031852` must keep their zeros)."""
    try:
        df = pd.read_csv(path, header=None, names=["user", "item", "rating", "timestamp"],
                         dtype={"user": str, "item": str, "rating": np.float64, "timestamp": np.float64},
                         engine="c")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty file; expected lines 'user,item,rating,timestamp'") from None
    except pd.errors.ParserError as e:
        raise DatasetError(f"{path}: {e}; expected 4 comma-separated fields "
                           f"'user,item,rating,timestamp' per line, no header") from None
    except ValueError:
        raw = pd.read_csv(path, header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
        for col in ("rating", "timestamp"):
            bad = pd.to_numeric(raw[col], errors="coerce").isna() & raw[col].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DatasetError(f"{path}, line {i + 1}: {col} is {raw[col].iloc[i]!r}; expected a "
                                   f"number (the file has no header: 'user,item,rating,timestamp')") from None
        raise
    return df


def read_reviews_json(path: Path) -> pd.DataFrame:
    """2018 reviews, one JSON object per line; keeps `reviewerID`, `asin`, `overall`,
    `unixReviewTime` as user, item, rating, timestamp."""
    users, items, ratings, times = [], [], [], []
    bad = _BadLines(path, "JSON reviews with reviewerID, asin, overall, unixReviewTime")
    total = 0
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            total += 1
            try:
                rec = json.loads(line)
                u, i, r, t = rec["reviewerID"], rec["asin"], float(rec["overall"]), int(rec["unixReviewTime"])
            except (ValueError, KeyError, TypeError) as e:
                bad.add(line_no, f"{type(e).__name__}: {e}"[:120])
                continue
            users.append(u)
            items.append(i)
            ratings.append(r)
            times.append(t)
    bad.finish(total)
    return pd.DataFrame({"user": pd.array(users, dtype=object), "item": pd.array(items, dtype=object),
                         "rating": np.asarray(ratings, dtype=np.float64),
                         "timestamp": np.asarray(times, dtype=np.float64)})


def clean_interactions(df: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict]:
    """Drop rows without user/item/timestamp and exact duplicates (MMRec's notebook), then
    repeated (user, item) pairs, keeping each pair's earliest row. File order is kept."""
    stats = {"raw_rows": len(df)}
    df = df.dropna(subset=["user", "item", "timestamp"])
    stats["rows_missing_fields"] = stats["raw_rows"] - len(df)
    n = len(df)
    df = df.drop_duplicates(subset=["user", "item", "timestamp"])
    stats["exact_duplicates"] = n - len(df)
    repeat = df.sort_values("timestamp", kind="stable").duplicated(subset=["user", "item"])
    stats["repeated_pairs"] = int(repeat.sum())
    df = df[~repeat.reindex(df.index).to_numpy()]
    df = df.assign(timestamp=df["timestamp"].astype(np.int64))
    for key, what in (("rows_missing_fields", "row(s) without user, item or timestamp dropped"),
                      ("exact_duplicates", "exact duplicate row(s) dropped (same user, item, timestamp)")):
        if stats[key]:
            log.info("%s: %d %s", path.name, stats[key], what)
    if stats["repeated_pairs"]:
        log.warning("%s: %d (user, item) pair(s) occur again with another timestamp; MMRec's notebook "
                    "keeps them, but the MMRec format needs each pair once: the earliest row is kept "
                    "(before the 5-core filter)", path.name, stats["repeated_pairs"])
    return df, stats


# ---------------------------------------------------------------------------- metadata and text
def _parse_record(line: str) -> object:
    """JSON first (2018, fast); the 2014 files are Python literals: `ast.literal_eval`, never eval."""
    try:
        return json.loads(line)
    except ValueError:
        return ast.literal_eval(line.strip())


def read_meta(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Metadata records of the ASINs in `wanted`, one dict per line. Lines of other ASINs are
    recognised by a regular expression and never parsed (the big files have millions)."""
    records: dict[str, dict] = {}
    bad = _BadLines(path, "metadata dicts with an 'asin' key")
    total = duplicates = 0
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            total += 1
            m = _ASIN_RE.search(line)
            if m is None:
                bad.add(line_no, "no 'asin' key")
                continue
            if m.group(1) not in wanted:
                continue
            try:
                rec = _parse_record(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                bad.add(line_no, f"asin {m.group(1)}: {type(e).__name__}")
                continue
            if not isinstance(rec, dict) or rec.get("asin") not in wanted:
                bad.add(line_no, "not a dict with a wanted 'asin'")
                continue
            if rec["asin"] in records:
                duplicates += 1
                continue
            records[rec["asin"]] = rec
    bad.finish(total)
    if duplicates:
        log.info("%s: %d repeated metadata record(s) for kept items; the first one is used", path.name, duplicates)
    log.info("%s: %d lines read, metadata found for %d of %d kept items", path.name, total, len(records), len(wanted))
    return records


def _field(value: object) -> str:
    """A text field as MMRec's notebook sees it after its CSV round trip: missing or empty -> ' '."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return " "
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    value = str(value)
    return value if value else " "


def sentence_2014(rec: dict) -> tuple[str, bool]:
    """`title brand c1 c2 ... description` with the words of the first category path (as
    `3feat-encoder.ipynb`), newlines as spaces. Also says whether a category path was there."""
    cats = rec.get("categories")
    path = cats[0] if isinstance(cats, list) and cats and isinstance(cats[0], list) else []
    words = "".join(f"{c} " for c in path)
    sen = _field(rec.get("title")) + " " + _field(rec.get("brand")) + " " + words + _field(rec.get("description"))
    return sen.replace("\n", " "), bool(path)


def sentence_2018(rec: dict) -> tuple[str, bool]:
    """The 2018 fields in the same order: `category` is one flat list, `description` a list."""
    cats = rec.get("category")
    path = [str(c) for c in cats] if isinstance(cats, list) else []
    words = "".join(f"{c} " for c in path)
    sen = _field(rec.get("title")) + " " + _field(rec.get("brand")) + " " + words + _field(rec.get("description"))
    return sen.replace("\n", " "), bool(path)


def text_features(asins: list[str], meta: dict[str, dict], release: str,
                  encoder: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encode the sentence of each item with metadata; the others get the mean of those rows
    (the image rule of MMRec's notebook, applied to text). Returns features, has-metadata mask,
    stats."""
    make = sentence_2014 if release == "2014" else sentence_2018
    has = np.array([a in meta for a in asins], dtype=bool)
    built = [make(meta[a]) for a in asins if a in meta]
    sentences = [s for s, _ in built]
    no_category = sum(1 for _, has_cat in built if not has_cat)
    if no_category:
        log.info("%d kept item(s) have an empty or missing category path; their sentence has no "
                 "category words", no_category)
    if not sentences:
        raise DatasetError("no kept item has metadata; cannot build text features "
                           "(is the metadata file of the same category?)")
    start = time.perf_counter()
    encoded = np.asarray(encoder(sentences), dtype=np.float32)
    seconds = time.perf_counter() - start
    feat = np.empty((len(asins), encoded.shape[1]), dtype=np.float32)
    feat[has] = encoded
    feat[~has] = encoded.astype(np.float64).mean(axis=0).astype(np.float32)
    log.info("text features %s: %d sentences encoded in %.1f s; %d item(s) without metadata get the "
             "mean vector", feat.shape, len(sentences), seconds, int((~has).sum()))
    return feat, has, {"text_encode_total_s": round(seconds, 2), "items_no_category": no_category,
                       "example_sentence": sentences[0][:300]}


# ---------------------------------------------------------------------------- image features
def read_image_features(path: Path, asins: np.ndarray, chunk_records: int = 1024,
                        truncated: str = "error") -> tuple[np.ndarray, np.ndarray, dict]:
    """Stream `image_features_<C>.b` (10-byte ASIN + 4096 little-endian float32 per record) in
    chunks of `chunk_records` and keep the records of `asins` (row i = `asins[i]`). Items
    without a record get the mean of the kept items' records, as MMRec's notebook; an ASIN
    that occurs twice keeps its last record (the notebook's dict) and both enter the mean.
    Memory: the `[len(asins), 4096]` output plus one chunk."""
    if truncated not in TRUNCATED_POLICIES:
        raise ValueError(f"truncated is {truncated!r}; expected one of {TRUNCATED_POLICIES}")
    size = path.stat().st_size
    n_records, tail = divmod(size, IMAGE_RECORD.itemsize)
    if tail:
        where = f"{path}: {size:,} bytes is not a multiple of the {IMAGE_RECORD.itemsize:,}-byte record " \
                f"(10-byte ASIN + 4096 float32): the last record, at byte {n_records * IMAGE_RECORD.itemsize:,}, " \
                f"has only {tail:,} bytes"
        if truncated == "error":
            raise DatasetError(f"{where}. The file is probably an incomplete download: fetch it again, or "
                               f"pass truncated_image_record=skip to ignore the partial record")
        log.warning("%s; it is ignored (truncated_image_record=skip)", where)
    order = np.argsort(asins)
    sorted_asins = asins[order]
    feat = np.zeros((len(asins), IMAGE_DIM), dtype=np.float32)
    has = np.zeros(len(asins), dtype=bool)
    total = np.zeros(IMAGE_DIM, dtype=np.float64)
    matched = repeated = 0
    buf = bytearray(chunk_records * IMAGE_RECORD.itemsize)
    with open(path, "rb") as f:
        for start in range(0, n_records, chunk_records):
            n = min(chunk_records, n_records - start)
            view = memoryview(buf)[:n * IMAGE_RECORD.itemsize]
            if f.readinto(view) != len(view):
                raise DatasetError(f"{path}: file shrank while being read (record {start})")
            recs = np.frombuffer(buf, dtype=IMAGE_RECORD, count=n)
            pos = np.minimum(np.searchsorted(sorted_asins, recs["asin"]), len(sorted_asins) - 1)
            hit = sorted_asins[pos] == recs["asin"]
            if not hit.any():
                continue
            rows = order[pos[hit]]
            vectors = recs["feat"][hit]
            total += vectors.sum(axis=0, dtype=np.float64)
            matched += len(rows)
            # last occurrence wins, deterministically (fancy assignment with repeats does not say)
            rev_rows, rev_first = np.unique(rows[::-1], return_index=True)
            last = len(rows) - 1 - rev_first
            repeated += int(has[rev_rows].sum()) + len(rows) - len(rev_rows)
            feat[rev_rows] = vectors[last]
            has[rev_rows] = True
    if not has.any():
        raise DatasetError(f"{path}: none of its {n_records:,} records belongs to one of the {len(asins):,} "
                           f"kept items; is it the image file of the same category?")
    mean = (total / matched).astype(np.float32)
    feat[~has] = mean
    log.info("%s: %d records read, %d kept items have a vector, %d get the mean vector%s", path.name,
             n_records, int(has.sum()), int((~has).sum()),
             f"; {repeated} repeated record(s) of kept items, the last one kept" if repeated else "")
    return feat, has, {"image_records": n_records, "image_truncated_bytes": tail, "image_repeated": repeated}


# ---------------------------------------------------------------------------- build
def filter_interactions(df: pd.DataFrame, k: int, path: Path) -> pd.DataFrame:
    """Iterative k-core on integer-coded users/items; a clear error when nothing is left."""
    n_before = (df["user"].nunique(), df["item"].nunique(), len(df))
    out, rounds = kcore_filter(df, "user", "item", k=k)
    if len(out) == 0:
        raise DatasetError(f"{path}: no interaction survives the {k}-core filter ({n_before[0]:,} users, "
                           f"{n_before[1]:,} items, {n_before[2]:,} rows before); the category is empty "
                           f"or too small")
    log.info("%d-core in %d round(s): %d users, %d items, %d interactions (from %d / %d / %d)", k, rounds,
             out["user"].nunique(), out["item"].nunique(), len(out), *n_before)
    return out


def _handle_missing_meta(df: pd.DataFrame, item_names: np.ndarray, meta: dict, policy: str,
                         k: int, path: Path) -> pd.DataFrame:
    kept = np.unique(df["item"].to_numpy())
    missing = [str(a) for a in item_names[kept] if a not in meta]
    if not missing:
        return df
    shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    if policy == "error":
        raise DatasetError(f"{path}: no metadata for {len(missing)} kept item(s) ({shown}); pass "
                           f"missing_meta=mean (text = mean vector) or missing_meta=drop")
    if policy == "mean":
        log.warning("no metadata for %d kept item(s) (%s): they keep their interactions and get the mean "
                    "text vector (missing_meta=mean)", len(missing), shown)
        return df
    log.warning("no metadata for %d kept item(s) (%s): their interactions are dropped and the %d-core "
                "filter runs again (missing_meta=drop)", len(missing), shown, k)
    missing_codes = np.flatnonzero(np.isin(item_names, missing))
    return filter_interactions(df[~df["item"].isin(missing_codes)], k, path)


def build(out_dir: str | Path, *, raw_dir: str | Path, category: str | None = None, release: str = "2014",
          k: int = KCORE, split_seed: int = SPLIT_SEED, missing_meta: str = "mean",
          truncated_image_record: str = "error", require_image: bool | None = None,
          image_chunk_records: int = 1024, device: str | None = None,
          text_encoder: Callable[[list[str]], np.ndarray] | None = None) -> dict:
    """Build `out_dir` (named after the dataset) from the raw files of `category` in `raw_dir`.

    `category` defaults to the paper's category of `out_dir.name` (baby, sports, clothing).
    `missing_meta`: what happens to kept items without metadata (`mean` text vector, `drop`
    them and redo the k-core, or `error`). `truncated_image_record`: `error` or `skip` a partial
    last record of the `.b` file. `text_encoder` replaces MiniLM (tests). The folder appears
    only when the build and its verification succeed. Returns the build statistics."""
    out_dir = Path(out_dir)
    name = out_dir.name
    if missing_meta not in MISSING_META_POLICIES:
        raise DatasetError(f"missing_meta is {missing_meta!r}; expected one of {MISSING_META_POLICIES}")
    if truncated_image_record not in TRUNCATED_POLICIES:
        raise DatasetError(f"truncated_image_record is {truncated_image_record!r}; "
                           f"expected one of {TRUNCATED_POLICIES}")
    release = str(release)
    if category is None:
        if name not in PAPER_CATEGORIES:
            raise DatasetError(f"no category given for dataset '{name}'; pass category=<C> as in the "
                               f"raw file names (ratings_<C>.csv / <C>.json.gz)")
        category = PAPER_CATEGORIES[name]
    start = time.perf_counter()
    timings: dict[str, float] = {}
    with atomic_dataset_dir(out_dir) as tmp, log_to_file(tmp / "prepare.log"):
        log.info("building '%s' from the Amazon %s files of category %s in %s", name, release, category, raw_dir)
        log.info("settings: k=%d split_seed=%d missing_meta=%s truncated_image_record=%s", k, split_seed,
                 missing_meta, truncated_image_record)
        files = find_raw_files(raw_dir, category, release, require_image)
        for p in (files.interactions, files.meta, files.image):
            if p is not None:
                log.info("input %s (%s bytes)", p, f"{p.stat().st_size:,}")

        t = time.perf_counter()
        raw = read_ratings_csv(files.interactions) if release == "2014" else read_reviews_json(files.interactions)
        if len(raw) == 0:
            raise DatasetError(f"{files.interactions}: no interactions; the category is empty")
        df, stats = clean_interactions(raw, files.interactions)
        del raw
        user_codes, user_names = pd.factorize(df["user"])
        item_codes, item_names = pd.factorize(df["item"])
        df = pd.DataFrame({"user": user_codes, "item": item_codes, "rating": df["rating"].to_numpy(),
                           "timestamp": df["timestamp"].to_numpy()})
        item_names = np.asarray(item_names, dtype=object)
        df = filter_interactions(df, k, files.interactions)
        timings["read_filter_s"] = time.perf_counter() - t

        t = time.perf_counter()
        wanted = {str(a) for a in item_names[np.unique(df["item"].to_numpy())]}
        meta = read_meta(files.meta, wanted)
        df = _handle_missing_meta(df, item_names, meta, missing_meta, k, files.interactions)
        timings["meta_s"] = time.perf_counter() - t

        df, u_map = remap_ids(df, "user", "userID", order="appearance")
        df, i_map = remap_ids(df, "item", "itemID", order="appearance")
        u_map = pd.DataFrame({"user_id": np.asarray(user_names, dtype=object)[u_map["user"]],
                              "userID": u_map["userID"]})
        i_map = pd.DataFrame({"asin": item_names[i_map["item"]], "itemID": i_map["itemID"]})
        df = mmrec_split(df, seed=split_seed)
        asins = i_map["asin"].astype(str).tolist()

        t = time.perf_counter()
        encoder = text_encoder or (lambda s: encode_sentences(s, device=device)[0])
        text, has_meta, text_stats = text_features(asins, meta, release, encoder)
        timings["text_s"] = time.perf_counter() - t
        modalities = {}
        if files.image is not None:
            t = time.perf_counter()
            image, has_image, image_stats = read_image_features(
                files.image, np.array(asins, dtype=f"S{ASIN_BYTES}"), image_chunk_records, truncated_image_record)
            timings["image_s"] = time.perf_counter() - t
            modalities["image"] = "image_feat.npy"
        else:
            log.warning("no image feature file (image_features_%s.b): the dataset has the text modality only",
                        files.category)
            image_stats = {}
        modalities["text"] = "text_feat.npy"

        write_inter(df, tmp / f"{name}.inter")
        write_table(u_map, tmp / "u_id_mapping.csv")
        write_table(i_map, tmp / "i_id_mapping.csv")
        save_npy(text, tmp / "text_feat.npy")
        if files.image is not None:
            save_npy(image, tmp / "image_feat.npy")
            np.savetxt(tmp / "missed_img_itemIDs.csv", np.flatnonzero(~has_image), fmt="%d")
        if (~has_meta).any():
            np.savetxt(tmp / "missed_meta_itemIDs.csv", np.flatnonzero(~has_meta), fmt="%d")

        dims = {"text": TEXT_DIM} | ({"image": IMAGE_DIM} if files.image is not None else {})
        report = verify_dataset(tmp, name, modalities, feature_dims=dims, stats_status=WARN)
        report.root = out_dir  # checked in the temporary folder, shown under its final name
        log.info("verification:\n%s", report)
        if not report.ok:
            raise DatasetError(f"the prepared dataset failed verification:\n{report}")

        labels = df["x_label"].to_numpy()
        stats |= {"release": release, "category": files.category, "name": name, "k": k, "split_seed": split_seed,
                  "n_users": len(u_map), "n_items": len(i_map), "n_interactions": len(df),
                  "x_label_counts": {str(v): int((labels == v).sum()) for v in (0, 1, 2)},
                  "items_without_metadata": int((~has_meta).sum()),
                  "items_without_image": int((~has_image).sum()) if files.image is not None else None,
                  "modalities": modalities, "missing_meta": missing_meta}
        stats |= text_stats | image_stats | {k_: round(v, 2) for k_, v in timings.items()}
        for f in sorted(p.name for p in tmp.iterdir() if p.suffix in (".inter", ".npy")):
            stats[f"sha256_{f}"] = file_digest(tmp / f)
        stats["build_s"] = round(time.perf_counter() - start, 2)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        log.info("built '%s' in %.1f s: %d users, %d items, %d interactions; modalities %s", name,
                 stats["build_s"], stats["n_users"], stats["n_items"], stats["n_interactions"], modalities)
        if name not in PAPER_CATEGORIES:
            mods = "{" + ", ".join(f"{m}: {f}" for m, f in modalities.items()) + "}"
            log.info("train on it with: python src/train.py dataset=baby dataset.name=%s "
                     "'dataset.modalities=%s'", name, mods)
    return stats
