"""Generate a synthetic dataset in the MMRec format at any scale, for benchmarks and scale tests.

How the data is made, in four vectorised steps:
1. Degrees. User and item degrees follow a Zipf-like law (weight of the r-th ranked id is
   r^-alpha, ranks shuffled over ids) on top of a floor (`min_user_degree`,
   `min_item_degree`), capped at half the other side's size, and summing exactly to
   `n_interactions`.
2. Pairing. A configuration model with taste: items belong to clusters placed on a line,
   users get a taste position on the same line, and user and item "stubs" are matched by
   sorting both on position plus noise. Users therefore favour items of nearby clusters, so
   the interactions and the features share structure.
3. Repair. Duplicate (user, item) pairs are removed by swapping the item of each duplicate
   with the item of a random other row; degrees are unchanged; repeat until none is left.
4. Features. For each modality, item vector = (cluster centroid + item offset) in a low-rank
   space, projected to `dim` and plus isotropic noise; float32, written in row chunks.

The split is MMRec's (`common.mmrec_split`). Each item's cluster is saved as
`item_cluster.npy` (ground truth for sanity checks; not a modality).
"""
from __future__ import annotations

import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.prepare.common import atomic_dataset_dir, mmrec_split, write_inter

log = logging.getLogger(__name__)

PAPER_DIMS = {"image": 4096, "text": 384}
# Sizes copied from the paper's Table 1 (Amazon 5-core sets, hence items >= 5 too);
# `tiny` is for tests.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_users=200, n_items=150, n_interactions=3_000, feature_dims={"image": 64, "text": 32},
                 min_item_degree=5),
    "baby_scale": dict(n_users=19_445, n_items=7_050, n_interactions=160_792, feature_dims=PAPER_DIMS,
                       min_item_degree=5),
    "sports_scale": dict(n_users=35_598, n_items=18_357, n_interactions=296_337, feature_dims=PAPER_DIMS,
                         min_item_degree=5),
    "clothing_scale": dict(n_users=39_387, n_items=23_033, n_interactions=278_677,
                           feature_dims=PAPER_DIMS, min_item_degree=5),
    # past the paper (issue 7): a million users and items, ten million interactions
    "million_scale": dict(n_users=1_000_000, n_items=1_000_000, n_interactions=10_000_000,
                          feature_dims={"image": 512, "text": 384}, min_item_degree=5),
}
FEATURE_CHUNK_ROWS = 1 << 15
MAX_REPAIR_ROUNDS = 200


def zipf_degrees(rng: np.random.Generator, n: int, total: int, minimum: int, cap: int,
                 alpha: float) -> np.ndarray:
    """`n` degrees, each in [minimum, cap], summing to `total`; the part above the floor is
    drawn with Zipf-like weights r^-alpha over a random ranking of the ids."""
    if n * minimum > total or n * cap < total:
        raise ValueError(f"cannot give {n} ids degrees in [{minimum}, {cap}] summing to {total}")
    weights = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    weights = rng.permutation(weights / weights.sum())
    degree = minimum + rng.multinomial(total - n * minimum, weights)
    for _ in range(MAX_REPAIR_ROUNDS):  # water-filling: hand the excess over the cap to the others
        excess = int(np.maximum(degree - cap, 0).sum())
        if excess == 0:
            return degree
        degree = np.minimum(degree, cap)
        room = np.where(degree < cap, weights, 0.0)
        degree += rng.multinomial(excess, room / room.sum())
    raise RuntimeError(f"could not cap {n} degrees at {cap} (total {total}, alpha {alpha})")


def _duplicate_rows(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Indices of rows whose (user, item) pair already occurs in an earlier row of the sorted order."""
    key = users * np.int64(n_items) + items
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    return order[1:][sorted_key[1:] == sorted_key[:-1]]


def pair_stubs(rng: np.random.Generator, user_deg: np.ndarray, item_deg: np.ndarray,
               user_pos: np.ndarray, item_pos: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Match user and item stubs by sorting both on position + Gaussian noise, then swap items
    between rows until no (user, item) pair repeats. Returns users, items, repair rounds."""
    users = np.repeat(np.arange(len(user_deg), dtype=np.int64), user_deg)
    items = np.repeat(np.arange(len(item_deg), dtype=np.int64), item_deg)
    user_key = user_pos[users] + noise * rng.standard_normal(len(users))
    item_key = item_pos[items] + noise * rng.standard_normal(len(items))
    users = users[np.argsort(user_key, kind="stable")]
    items = items[np.argsort(item_key, kind="stable")]
    n_rows = len(users)
    for rounds in range(MAX_REPAIR_ROUNDS):
        dup = _duplicate_rows(users, items, len(item_deg))
        if len(dup) == 0:
            return users, items, rounds
        # Swap each duplicate's item with that of a distinct random non-duplicate row: the
        # degrees of every user and item stay exactly the same.
        is_dup = np.zeros(n_rows, dtype=bool)
        is_dup[dup] = True
        candidates = np.flatnonzero(~is_dup)
        if len(candidates) < len(dup):
            break
        partners = candidates[rng.choice(len(candidates), size=len(dup), replace=False)]
        items[dup], items[partners] = items[partners], items[dup].copy()
    raise RuntimeError(f"could not remove duplicate pairs in {MAX_REPAIR_ROUNDS} rounds; the "
                       f"degrees are too concentrated (lower user_alpha/item_alpha or add items)")


def write_features(path: Path, rng: np.random.Generator, clusters: np.ndarray, dim: int,
                   rank: int, item_spread: float, noise: float) -> None:
    """Low-rank, cluster-tied item features (float32 `[n_items, dim]`), written chunk by chunk
    so that memory stays flat whatever the number of items."""
    n_clusters = int(clusters.max()) + 1
    rank = min(rank, dim)
    centroids = rng.standard_normal((n_clusters, rank), dtype=np.float32)
    basis = rng.standard_normal((rank, dim), dtype=np.float32) / np.float32(np.sqrt(rank))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(clusters), dim))
    for start in range(0, len(clusters), FEATURE_CHUNK_ROWS):
        c = clusters[start:start + FEATURE_CHUNK_ROWS]
        latent = centroids[c] + np.float32(item_spread) * rng.standard_normal((len(c), rank), dtype=np.float32)
        block = latent @ basis
        block += np.float32(noise) * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:start + len(c)] = block
    out.flush()
    del out


def _stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per purpose, so e.g. adding a modality leaves the
    interactions unchanged."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def generate(out_dir: Path, *, n_users: int, n_items: int, n_interactions: int,
             feature_dims: dict[str, int], seed: int = 0, user_alpha: float = 0.5,
             item_alpha: float = 0.75, min_user_degree: int = 5, min_item_degree: int = 1,
             n_clusters: int | None = None, taste_noise: float = 0.02, feature_rank: int = 16,
             feature_item_spread: float = 0.5, feature_noise: float = 0.5) -> dict:
    """Write `<out_dir.name>.inter`, one `<modality>_feat.npy` per entry of `feature_dims`,
    `item_cluster.npy` and `stats.json` into `out_dir` (atomically, with a `.complete`
    marker). Returns statistics and timings.

    `user_alpha`/`item_alpha` set how heavy the degree tails are (0: uniform); `taste_noise`
    how loosely users stick to item clusters near their taste; the `feature_*` arguments
    how clearly the features show the clusters."""
    if min_user_degree < 3:
        raise ValueError(f"min_user_degree={min_user_degree}: the MMRec split needs >= 3 per user")
    if min_item_degree < 1:
        raise ValueError(f"min_item_degree={min_item_degree}: every item must occur at least once")
    out_dir = Path(out_dir)
    n_clusters = n_clusters or max(2, min(64, n_items // 50))
    times, t0 = {}, time.perf_counter()

    rng = _stream(seed, "degrees")
    # Capping degrees at half the other side keeps the swap repair quick on small, dense sets.
    user_deg = zipf_degrees(rng, n_users, n_interactions, min_user_degree, max(min_user_degree, n_items // 2),
                            user_alpha)
    item_deg = zipf_degrees(rng, n_items, n_interactions, min_item_degree, max(min_item_degree, n_users // 2),
                            item_alpha)
    rng = _stream(seed, "pairs")
    clusters = rng.integers(n_clusters, size=n_items)
    item_pos = (clusters + 0.5) / n_clusters
    user_pos = rng.random(n_users)
    users, items, repair_rounds = pair_stubs(rng, user_deg, item_deg, user_pos, item_pos, taste_noise)
    times["interactions_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    df = mmrec_split(pd.DataFrame({"userID": users, "itemID": items}), seed=seed,
                     order_cols=("userID", "itemID"))
    times["split_s"] = time.perf_counter() - t1
    log.info("%d users x %d items, %d interactions (%d repair rounds) in %.1f s",
             n_users, n_items, len(df), repair_rounds, time.perf_counter() - t0)

    with atomic_dataset_dir(out_dir) as tmp:
        t2 = time.perf_counter()
        write_inter(df, tmp / f"{out_dir.name}.inter")
        times["write_inter_s"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        for modality, dim in feature_dims.items():
            write_features(tmp / f"{modality}_feat.npy", _stream(seed, f"feature:{modality}"),
                           clusters, dim, feature_rank, feature_item_spread, feature_noise)
        np.save(tmp / "item_cluster.npy", clusters.astype(np.int32))  # ground truth, for checks
        times["features_s"] = time.perf_counter() - t3
        labels = df["x_label"].to_numpy()
        stats = {
            "n_users": n_users, "n_items": n_items, "n_interactions": len(df), "seed": seed,
            "x_label_counts": {str(k): int((labels == k).sum()) for k in (0, 1, 2)},
            "user_deg_min": int(user_deg.min()), "user_deg_max": int(user_deg.max()),
            "item_deg_min": int(item_deg.min()), "item_deg_max": int(item_deg.max()),
            "n_clusters": n_clusters, "repair_rounds": repair_rounds,
            "feature_dims": dict(feature_dims),
        }
        times["total_s"] = time.perf_counter() - t0
        stats |= {k: round(v, 2) for k, v in times.items()}
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    log.info("wrote %s in %.1f s", out_dir, time.perf_counter() - t0)
    return stats


def build_preset(out_dir: Path, preset: str, seed: int = 0) -> dict:
    """`generate` with the sizes of one of `PRESETS`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; expected one of {sorted(PRESETS)}")
    return generate(out_dir, seed=seed, **PRESETS[preset])
