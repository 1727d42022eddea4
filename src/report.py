"""Tables and figures from a sweep: `python src/report.py outputs/multiruns/<stamp>`.

Writes into the sweep dir (or `--out`): `summary.csv` (one row per job, failed and missing
jobs included), `table.md` (the paper's Table 2/3 shape: mean ± std over seeds, best bold,
second underlined, SPUMR's improvement and paired t-tests), `best.md`/`best.json` for grid
sweeps (chosen on validation), and PNG figures (sensitivity curves, noise curves, gate
against σ) where the sweep has what they need. The same report runs automatically at the end
of every multirun (conf/hydra/default.yaml). Several sweep dirs can be combined with `--out`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.reporting import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="Hydra multirun dir(s) (or run dirs)")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: the sweep dir)")
    parser.add_argument("--reference", default="spumr",
                        help="row compared with the others (improvement, t-test); 'none' for no reference")
    parser.add_argument("--stage", default="test", choices=("val", "test"), help="metrics shown in table.md")
    parser.add_argument("--select-metric", default="val/recall@20", help="grid selection metric (val/ only)")
    parser.add_argument("--plot-metric", default="test/recall@20", help="metric of the figures")
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = write_report(args.sweep_dirs, out_dir=args.out,
                          reference=None if args.reference.lower() == "none" else args.reference,
                          stage=args.stage, select_metric=args.select_metric, plot_metric=args.plot_metric,
                          figures=not args.no_figures)
    print(f"jobs: {result.counts}")
    for path in result.files:
        print(f"wrote {path}")
    problems = result.sweep.problems
    for _, r in problems.iterrows():
        print(f"  {r['status']:>10}  {r['job']}  {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
