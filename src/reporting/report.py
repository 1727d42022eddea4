"""`write_report`: everything `src/report.py` writes for one or more sweep dirs."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from src.reporting.collect import RUN_FIELDS, Sweep, collect
from src.reporting.select import select_best, write_selection
from src.reporting.tables import markdown_report

log = logging.getLogger(__name__)

LEAD_COLUMNS = ["job", "num", "status", "model", "variant", "label", "dataset", "seed"]
TAIL_COLUMNS = ["task_name", "overrides", "error", "path"]


@dataclass
class ReportResult:
    out_dir: Path
    sweep: Sweep
    files: list[Path] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return self.sweep.jobs["status"].value_counts().to_dict()

    @property
    def n_failed(self) -> int:
        return int((self.sweep.jobs["status"] != "ok").sum())


def summary_frame(sweep: Sweep) -> pd.DataFrame:
    """summary.csv's columns: identity, swept settings, val/test metrics, run fields, uncertainty."""
    jobs = sweep.jobs
    metric_cols = sorted((c for c in jobs.columns if c.startswith(("val/", "test/"))),
                         key=lambda c: (not c.startswith("val/"), c))
    lead = [c for c in LEAD_COLUMNS if c in jobs.columns]
    swept = [k for k in sweep.swept if k in jobs.columns and k not in lead]
    for key in ("lambda_kl", "lambda_u"):
        if key in jobs.columns and key not in swept:
            swept.append(key)
    run = [c for c in RUN_FIELDS if c in jobs.columns]
    tail = [c for c in TAIL_COLUMNS if c in jobs.columns]
    used = set(lead + swept + metric_cols + run + tail)
    rest = [c for c in jobs.columns if c not in used]  # uncertainty stats, noise settings
    return jobs[lead + swept + metric_cols + run + rest + tail]


def write_report(sweep_dirs: list[str | Path] | str | Path, out_dir: str | Path | None = None,
                 reference: str | None = "spumr", stage: str = "test", select_metric: str = "val/recall@20",
                 plot_metric: str = "test/recall@20", figures: bool = True) -> ReportResult:
    """Collect the jobs and write summary.csv, table.md, best.{md,json} (grids) and PNGs."""
    dirs = [sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else list(sweep_dirs)
    if not dirs:
        raise ValueError("write_report: no sweep dir given")
    if out_dir is None and len(dirs) > 1:
        raise ValueError("write_report: several sweep dirs need an explicit out_dir")
    out = Path(out_dir or dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    sweep = collect(dirs)
    result = ReportResult(out_dir=out, sweep=sweep)

    summary_frame(sweep).to_csv(out / "summary.csv", index=False)
    result.files.append(out / "summary.csv")
    title = ", ".join(sorted({str(t) for t in sweep.jobs.get("task_name", pd.Series()).dropna()})) or "Results"
    text = markdown_report(sweep.ok, sweep.settings, sweep.problems, stage=stage, reference=reference, title=title)
    if sweep.notes:
        text += "\n" + "\n".join(f"Note: {n}" for n in sweep.notes) + "\n"
    (out / "table.md").write_text(text)
    result.files.append(out / "table.md")
    result.files += write_selection(select_best(sweep.ok, sweep.settings, select_metric), out)
    if figures:
        from src.reporting.figures import all_figures  # matplotlib only when plotting
        result.files += all_figures(sweep.ok, out, plot_metric)
    return result
