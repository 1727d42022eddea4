"""Write synthetic raw Amazon 2014 files for one category, in exactly the release's formats.

    python scripts/make_raw_amazon.py --out raw/ --category Baby --ratings 1000000 --image-records 50000

Writes into `--out`:
- `ratings_<C>.csv`: `user,item,rating,timestamp`, no header, sorted by item like the real
  files; user and item degrees are heavy-tailed (Zipf-like weights), so the 5-core keeps a
  small dense part, as it does on the real categories;
- `meta_<C>.json.gz`: one Python-literal dict per line (`repr`, single quotes) with asin,
  title, price, imUrl, related, brand, categories, salesRank, description; a share of the items
  has no metadata line, some lack brand or description, some have an empty category list;
- `image_features_<C>.b`: `--image-records` records of a 10-byte ASIN followed by 4096
  little-endian float32 (non-negative, like ReLU CNN outputs), for a random share of the items
  and some ASINs that are not in the ratings.

Used to measure `src/prepare_data.py source=amazon2014` at scale; nothing here is real data.
"""
from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_DIM = 4096
WORDS = ("soft cotton baby blanket bottle stroller seat safety toddler warm organic gentle travel "
         "bath towel spoon bowl crib sheet monitor portable wipes diaper bag cup toy music light "
         "sleep cover pad pack set classic pink blue natural easy clean durable lightweight").split()
CATEGORY_PATHS = [["Baby", "Feeding", "Bottles"], ["Baby", "Nursery", "Bedding"],
                  ["Baby", "Strollers"], ["Baby", "Bathing & Skin Care", "Washcloths & Towels"],
                  ["Baby", "Safety", "Monitors"], ["Baby", "Gear", "Car Seats"]]
ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype="S1")


def random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """`n` distinct ids: `prefix` + random upper-case letters and digits, `length` chars in all."""
    width = length - len(prefix)
    out = np.array([], dtype=f"U{length}")
    while len(out) < n:
        chars = np.ascontiguousarray(ALNUM[rng.integers(0, len(ALNUM), size=(2 * n, width))])
        ids = np.char.add(prefix, chars.view(f"S{width}").ravel().astype(f"U{width}"))
        out = np.unique(np.concatenate([out, ids]))
    return rng.permutation(out)[:n]


def item_asins(rng: np.random.Generator, n: int) -> np.ndarray:
    """ASINs like the real ones: ~5% are 10-digit ISBN-style numbers (leading zeros kept)."""
    n_numeric = n // 20
    numeric = np.char.zfill(rng.choice(10 ** 9, size=n_numeric, replace=False).astype(str), 10)
    return rng.permutation(np.concatenate([numeric, random_ids(rng, n - n_numeric, "B00", 10)]))


def zipf_weights(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    return rng.permutation(w / w.sum())


def write_ratings(path: Path, rng: np.random.Generator, users: np.ndarray, items: np.ndarray,
                  n_ratings: int, user_alpha: float, item_alpha: float) -> int:
    n_dup = max(1, n_ratings // 1000)  # a few exact duplicate rows, as raw data has
    n_draw = int(n_ratings * 1.1) + 100  # extra draws make up for repeated (user, item) pairs
    u = rng.choice(len(users), size=n_draw, p=zipf_weights(rng, len(users), user_alpha))
    i = rng.choice(len(items), size=n_draw, p=zipf_weights(rng, len(items), item_alpha))
    df = pd.DataFrame({"user": users[u], "item": items[i],
                       "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=n_draw, p=[.05, .05, .1, .25, .55]),
                       "timestamp": rng.integers(1_000_000_000, 1_406_000_000, size=n_draw) // 86400 * 86400})
    df = df.drop_duplicates(["user", "item"]).iloc[:n_ratings - n_dup]
    if len(df) < n_ratings - n_dup:
        raise SystemExit(f"only {len(df)} distinct pairs; raise --users or --items")
    df = pd.concat([df, df.sample(n=n_dup, random_state=1)]).sort_values("item", kind="stable")
    df.to_csv(path, header=False, index=False, float_format="%.1f")
    return len(df)


def meta_line(rng: np.random.Generator, asin: str, k: int) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(20, 120)))
    rec: dict = {"asin": asin, "title": " ".join(words[:6]).title(), "price": round(float(rng.uniform(3, 90)), 2),
                 "imUrl": f"http://ecx.images-amazon.com/images/I/{asin}.jpg",
                 "related": {"also_bought": [asin[::-1]], "bought_together": []},
                 "salesRank": {"Baby": int(rng.integers(1, 500_000))}}
    if k % 7:
        rec["brand"] = str(rng.choice(["Munchkin", "Graco", "Chicco", "Aden + Anais", ""]))
    rec["categories"] = [] if k % 97 == 0 else [list(CATEGORY_PATHS[k % len(CATEGORY_PATHS)])]
    if k % 11:
        rec["description"] = " ".join(words[6:]).capitalize() + ".\nMachine washable."
    return repr(rec) + "\n"


def write_meta(path: Path, rng: np.random.Generator, items: np.ndarray, missing_share: float) -> int:
    keep = rng.random(len(items)) >= missing_share
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=3) as f:
        for k, asin in enumerate(items[keep]):
            f.write(meta_line(rng, str(asin), k))
    return int(keep.sum())


def write_image_features(path: Path, rng: np.random.Generator, items: np.ndarray, n_records: int,
                         foreign_share: float = 0.05, chunk: int = 2048) -> None:
    own = rng.choice(items, size=min(n_records - int(n_records * foreign_share), len(items)), replace=False)
    n_foreign = n_records - len(own)
    asins = rng.permutation(np.concatenate([own, random_ids(rng, n_foreign, "X00", 10)]))
    rec = np.dtype([("asin", "S10"), ("feat", "<f4", (IMAGE_DIM,))])
    with open(path, "wb") as f:
        for start in range(0, len(asins), chunk):
            part = asins[start:start + chunk]
            block = np.empty(len(part), dtype=rec)
            block["asin"] = np.char.encode(part.astype(str), "ascii")
            block["feat"] = np.maximum(rng.standard_normal((len(part), IMAGE_DIM), dtype=np.float32), 0) * 2
            f.write(block.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--category", default="Baby")
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=None, help="default: ratings / 2")
    ap.add_argument("--items", type=int, default=None, help="default: ratings / 14")
    ap.add_argument("--image-records", type=int, default=50_000)
    ap.add_argument("--user-alpha", type=float, default=0.6)
    ap.add_argument("--item-alpha", type=float, default=0.9)
    ap.add_argument("--foreign-share", type=float, default=0.05,
                    help="share of image records for ASINs that are not in the ratings")
    ap.add_argument("--missing-meta", type=float, default=0.002, help="share of items without a metadata line")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    n_users = args.users or args.ratings // 2
    n_items = args.items or args.ratings // 14
    t0 = time.perf_counter()
    users, items = random_ids(rng, n_users, "A", 14), item_asins(rng, n_items)
    c = args.category
    rows = write_ratings(args.out / f"ratings_{c}.csv", rng, users, items, args.ratings,
                         args.user_alpha, args.item_alpha)
    n_meta = write_meta(args.out / f"meta_{c}.json.gz", rng, items, args.missing_meta)
    write_image_features(args.out / f"image_features_{c}.b", rng, items, args.image_records, args.foreign_share)
    for p in sorted(args.out.iterdir()):
        print(f"{p.stat().st_size:>14,} bytes  {p}")
    print(f"{rows:,} rating rows, {n_users:,} users, {n_items:,} items ({n_meta:,} with metadata), "
          f"{args.image_records:,} image records; {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
