"""`task_wrapper`: run a task and always close its W&B run (multirun jobs must not merge)."""
from __future__ import annotations

import functools
import logging
import sys

log = logging.getLogger(__name__)


def close_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb
        if wandb.run is not None:
            log.info("closing the W&B run")
            wandb.finish()


def task_wrapper(task):
    @functools.wraps(task)
    def wrapped(cfg):
        try:
            return task(cfg)
        except Exception:
            log.exception("task failed")
            raise
        finally:
            close_wandb()
    return wrapped
