"""`task_wrapper`: run a task, record its failure in the job dir, always close its W&B run.

On an exception the traceback goes to `<paths.output_dir>/error.txt` (what `src/report.py`
lists as a failed job) and the exception propagates. Multirun jobs must not merge their W&B
runs, hence `wandb.finish()` after every task.
"""
from __future__ import annotations

import functools
import logging
import sys
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

ERROR_FILE = "error.txt"


def close_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb
        if wandb.run is not None:
            log.info("closing the W&B run")
            wandb.finish()


def _error_path(cfg) -> Path | None:
    """`<paths.output_dir>/error.txt`, or None when the config has no resolvable output dir."""
    try:
        return Path(str(cfg.paths.output_dir)) / ERROR_FILE
    except Exception:  # noqa: BLE001 - a config without paths (or outside Hydra) records nothing
        return None


def task_wrapper(task):
    @functools.wraps(task)
    def wrapped(cfg):
        error_path = _error_path(cfg)
        if error_path is not None:
            error_path.unlink(missing_ok=True)  # a rerun in the same dir starts clean
        try:
            return task(cfg)
        except Exception:
            log.exception("task failed")
            if error_path is not None:
                error_path.parent.mkdir(parents=True, exist_ok=True)
                error_path.write_text(traceback.format_exc())
            raise
        finally:
            close_wandb()
    return wrapped
