"""Hydra callback (conf/hydra/default.yaml): plan a multirun at its start, report at its end.

`on_multirun_start` writes `sweep_plan.json` (every job's overrides, as the BasicSweeper will
expand them) so that jobs which never start are listed as missing. `on_multirun_end` runs
`write_report` on the sweep dir; if any job failed it then exits with status 1, after the
report is written (the failed jobs' tracebacks are in their error.txt). Single runs
are untouched. A report that itself crashes is logged, never allowed to hide the jobs' outputs:
rerun it with `python src/report.py <sweep dir>`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class SweepReport(Callback):
    def __init__(self, enabled: bool = True, fail_on_job_error: bool = True, reference: str | None = "spumr"):
        self.enabled, self.fail_on_job_error, self.reference = enabled, fail_on_job_error, reference

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from src.reporting.collect import PLAN_FILE, expand_plan
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweeper = config.hydra.sweeper
        if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return
        try:
            from hydra.core.global_hydra import GlobalHydra
            loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
            params = sweeper.get("params")
            params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
            jobs = expand_plan(params, list(config.hydra.overrides.task), loader)
        except Exception as e:  # noqa: BLE001 - the sweeper will report a bad sweep itself
            log.warning("could not plan the sweep (%s); missing jobs will not be listed", e)
            return
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PLAN_FILE).write_text(json.dumps({"jobs": jobs}, indent=1) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            from src.reporting import write_report
            result = write_report(sweep_dir, reference=self.reference)
        except Exception:  # noqa: BLE001
            log.exception("the sweep report failed; rerun it with: python src/report.py %s", sweep_dir)
            return
        log.info("report: %s (jobs: %s)", sweep_dir / "table.md", result.counts)
        if result.n_failed and self.fail_on_job_error:
            bad = result.sweep.problems
            log.error("%d of %d jobs did not finish (%s); see %s and each job's error.txt", len(bad),
                      len(result.sweep.jobs), ", ".join(f"{j} {s}" for j, s in zip(bad["job"], bad["status"])),
                      sweep_dir / "table.md")
            # Hydra turns a callback's exceptions into warnings; SystemExit is how the sweep
            # still exits non-zero (hydra.callbacks.sweep_report.fail_on_job_error=false: exit 0)
            raise SystemExit(1)
