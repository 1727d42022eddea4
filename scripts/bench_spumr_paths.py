"""Seconds per SPUMR training epoch on the fast and the literal path (prints timings; not a test).

    python scripts/bench_spumr_paths.py                                   # ml100k
    python scripts/bench_spumr_paths.py dataset=synthetic dataset.preset=baby_scale --max-batches 20

Hydra overrides pick the dataset (and `model.net.*` switches). For each path the script builds
the model (timing the construction, which includes the fast path's precomputation), then runs
one epoch of the harness's BPR batches with Adam (forward, backward, step) and one evaluation
pass (`prepare_eval` plus the full score matrix of every user, in 4096-user blocks). With
`--max-batches N` only the first N batches run and the epoch time is extrapolated.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from src.data.sampling import BPRSampler  # noqa: E402


def time_path(dm, net_partial, path: str, max_batches: int | None) -> dict[str, float]:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = net_partial(data=dm.data, graphs=dm.graphs, path=path)
    build = time.perf_counter() - t0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = BPRSampler(dm.data.train.users, dm.data.train.items, dm.data.n_items, dm.train_batch_size, seed=0)
    n_total, n_done = len(sampler), 0
    t0 = time.perf_counter()
    for users, pos, neg in sampler.batches(0):
        opt.zero_grad()
        sum(model.loss_terms(users, pos, neg).values()).backward()
        opt.step()
        n_done += 1
        if max_batches and n_done >= max_batches:
            break
    epoch = (time.perf_counter() - t0) / n_done * n_total
    t0 = time.perf_counter()
    with torch.no_grad():
        model.prepare_eval()
        for a in range(0, model.n_users, 4096):
            model.full_scores(torch.arange(a, min(a + 4096, model.n_users)))
        model.end_eval()
    return {"build_s": build, "epoch_s": epoch, "eval_s": time.perf_counter() - t0,
            "batches_timed": n_done, "batches_per_epoch": n_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-batches", type=int, default=None)
    parser.add_argument("--paths", default="fast,literal")
    args, overrides = parser.parse_known_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["model=spumr", f"paths.data_dir={ROOT / 'data'}",
                                               "paths.output_dir=/tmp", *overrides])
    dm = hydra.utils.instantiate(cfg.dataset)
    dm.prepare_data()
    dm.setup("fit")
    net = hydra.utils.instantiate(cfg.model.net)
    t0 = time.perf_counter()  # graphs (KNN, Jaccard) once, from the cache when present
    net(data=dm.data, graphs=dm.graphs, path="literal")
    print(f"{dm.data!r}\ngraphs ready in {time.perf_counter() - t0:.1f} s "
          f"(torch threads {torch.get_num_threads()})")
    for path in args.paths.split(","):
        r = time_path(dm, net, path, args.max_batches)
        print(f"{path:8s} build {r['build_s']:6.2f} s | train epoch {r['epoch_s']:7.2f} s "
              f"({r['batches_timed']}/{r['batches_per_epoch']} batches timed) | eval pass {r['eval_s']:6.2f} s")


if __name__ == "__main__":
    main()
