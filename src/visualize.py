"""Figures from trained runs (each loaded from its run dir and best checkpoint).

  # the paper's Fig. 4: t-SNE of the same 500 random users' final embeddings, runs side by side
  python src/visualize.py tsne outputs/runs/<lightgcn run> outputs/runs/<spumr run> --out tsne.png

  # per user, SPUMR's σ against the test ranking error (1 - NDCG@20 from topk.tsv):
  # sigma_error.csv (one row per test user), sigma_error_corr.csv (Pearson/Spearman per modality)
  # and sigma_error.png, in the run dir unless --out-dir is given
  python src/visualize.py sigma-error outputs/runs/<spumr run>
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

import numpy as np  # noqa: E402

from src.reporting.analysis import (NotSupported, per_user_test_metrics, sigma_error_figure,  # noqa: E402
                                    sigma_error_table, tsne_figure, user_embeddings, user_sigma)
from src.reporting.runs import load_run  # noqa: E402

log = logging.getLogger("visualize")


def run_tsne(run_dirs: list[Path], out: Path, n_users: int = 500, seed: int = 0,
             data_dir: Path | None = None) -> Path:
    """Fig. 4: writes `out` (PNG) and `out` with .csv (the 2-D coordinates); returns the PNG."""
    panels: dict[str, np.ndarray | str] = {}
    degrees = None
    for run_dir in run_dirs:
        run = load_run(run_dir, data_dir=data_dir)
        data = run.datamodule.data
        if degrees is None:
            degrees = np.bincount(data.train.users, minlength=data.n_users)
        title = f"{run.name}\n{Path(run_dir).name}"
        try:
            panels[title] = user_embeddings(run.net)
        except NotSupported as e:
            log.warning("%s: t-SNE not supported: %s", run_dir, e)
            panels[title] = f"not supported:\n{type(run.net).__name__} exposes no user embeddings"
    coords = tsne_figure(panels, degrees, out, n_users=n_users, seed=seed)
    coords.to_csv(out.with_suffix(".csv"), index=False)
    return out


def run_sigma_error(run_dir: Path, out_dir: Path | None = None, metric: str = "ndcg@20",
                    data_dir: Path | None = None) -> tuple[Path, Path, Path]:
    """Per-user σ against 1 - metric; returns (per-user CSV, correlation CSV, PNG)."""
    out_dir = Path(out_dir or run_dir)
    run = load_run(run_dir, data_dir=data_dir)
    data = run.datamodule.data
    sigma = user_sigma(run.net, data.n_users)
    metrics = per_user_test_metrics(Path(run_dir) / "topk.tsv", data)
    table, corr = sigma_error_table(sigma, metrics, np.bincount(data.train.users, minlength=data.n_users), metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "sigma_error.csv", out_dir / "sigma_error_corr.csv", out_dir / "sigma_error.png")
    table.to_csv(paths[0], index=False)
    corr.to_csv(paths[1], index=False)
    sigma_error_figure(table, corr, paths[2])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tsne", help="t-SNE of users' final embeddings, one panel per run (Fig. 4)")
    t.add_argument("runs", nargs="+", type=Path)
    t.add_argument("--out", type=Path, default=Path("tsne_users.png"))
    t.add_argument("--users", type=int, default=500)
    t.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("sigma-error", help="per-user σ against test ranking error (SPUMR runs)")
    s.add_argument("run", type=Path)
    s.add_argument("--out-dir", type=Path, default=None)
    s.add_argument("--metric", default="ndcg@20", help="error = 1 - this per-user metric (recall@k, ndcg@k)")
    for p in (t, s):
        p.add_argument("--data-dir", type=Path, default=None, help="dataset root if not the run's data/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "tsne":
            print(f"wrote {run_tsne(args.runs, args.out, args.users, args.seed, args.data_dir)}")
        else:
            for path in run_sigma_error(args.run, args.out_dir, args.metric, args.data_dir):
                print(f"wrote {path}")
    except NotSupported as e:
        print(f"not supported: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
