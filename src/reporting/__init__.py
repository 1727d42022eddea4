"""Reports of sweeps: `write_report(sweep_dirs)` writes summary.csv, table.md, best.md/json, PNGs.

Modules: `collect` (read job dirs into a table), `tables` (paper-shaped markdown with paired
t-tests), `select` (grid selection on validation), `figures` (matplotlib PNGs), `callback`
(the Hydra callback that runs the report when a multirun ends).
"""
from src.reporting.report import ReportResult, summary_frame, write_report

__all__ = ["ReportResult", "summary_frame", "write_report"]
