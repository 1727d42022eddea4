"""Read a sweep directory into one table: one row per planned or found job.

A Hydra multirun dir holds one subdir per job (`<num>_<model>_<dataset>/`) with `.hydra/`
(config.yaml, overrides.yaml, hydra.yaml), and, when the job finished, `metrics.json`; a job
that raised has `error.txt` (written by `src.utils.wrapper.task_wrapper`). `sweep_plan.json`
(written by the report callback when the sweep starts) lists every job's overrides, so jobs
that never started are listed too.

Status of a job: `ok` (metrics.json read), `failed` (error.txt), `incomplete` (a job dir with
neither: still running, or killed), `missing` (planned, no job dir), `unreadable`
(metrics.json present but not valid JSON).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

log = logging.getLogger(__name__)

PLAN_FILE = "sweep_plan.json"
ERROR_FILE = "error.txt"
METRICS_FILE = "metrics.json"
STAGES = ("val", "test")
RUN_FIELDS = ("best_epoch", "epochs", "train_seconds", "seconds_per_epoch", "eval_seconds_per_pass",
              "wall_seconds")
# override keys that identify a job rather than a setting of it
IDENTITY_KEYS = ("model", "dataset", "seed", "ablation", "experiment")


@dataclass
class Sweep:
    """The jobs of one or more sweep dirs: `jobs` has one row per job (see `read_job`)."""

    jobs: pd.DataFrame
    swept: list[str] = field(default_factory=list)  # override keys with more than one value
    notes: list[str] = field(default_factory=list)  # what could not be determined, and why

    @property
    def ok(self) -> pd.DataFrame:
        return self.jobs[self.jobs["status"] == "ok"]

    @property
    def problems(self) -> pd.DataFrame:
        return self.jobs[self.jobs["status"] != "ok"]

    @property
    def settings(self) -> list[str]:
        """Swept keys other than the job identity (e.g. `lambda_kl`, `noise.fraction`)."""
        return [k for k in self.swept if k not in IDENTITY_KEYS]


def override_key(text: str) -> str:
    """`+ablation` -> `ablation`, `~foo` -> `foo`: the config key an override sets."""
    return text.lstrip("+~")


def parse_value(text: str):
    """An override value as YAML reads it (`0.01` -> float, `3` -> int, `mf` -> str)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) or value is None else text


def parse_overrides(overrides: list[str]) -> dict[str, object]:
    out = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if sep:
            out[override_key(key)] = parse_value(value)
    return out


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        log.warning("cannot read %s: %s", path, e)
        return None


def _job_num(job_dir: Path, hydra_cfg: dict | None) -> int | None:
    num = ((hydra_cfg or {}).get("hydra") or {}).get("job", {}).get("num")
    if isinstance(num, int):
        return num
    m = re.match(r"^(\d+)(?:_|$)", job_dir.name)
    return int(m.group(1)) if m else None


def is_job_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in (".hydra", METRICS_FILE, ERROR_FILE))


def read_job(job_dir: Path) -> dict:
    """One row: identity, status, overrides, config values, metrics, run fields, uncertainty."""
    job_dir = Path(job_dir)
    hydra_cfg = _load_yaml(job_dir / ".hydra" / "hydra.yaml") if (job_dir / ".hydra" / "hydra.yaml").is_file() else None
    config = (_load_yaml(job_dir / ".hydra" / "config.yaml") if (job_dir / ".hydra" / "config.yaml").is_file()
              else None) or {}
    overrides = (_load_yaml(job_dir / ".hydra" / "overrides.yaml")
                 if (job_dir / ".hydra" / "overrides.yaml").is_file() else None) or []
    choices = (((hydra_cfg or {}).get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    row: dict = {"job": job_dir.name, "num": _job_num(job_dir, hydra_cfg), "path": str(job_dir),
                 "status": "incomplete", "error": "",
                 "model": choices.get("model"),
                 "dataset": (config.get("dataset") or {}).get("name") if isinstance(config.get("dataset"), dict)
                 else choices.get("dataset"),
                 "seed": config.get("seed"), "variant": config.get("variant"),
                 "task_name": config.get("task_name"),
                 "overrides": " ".join(map(str, overrides))}
    row.update({f"override:{k}": v for k, v in parse_overrides(overrides).items()})
    for key in ("lambda_kl", "lambda_u"):
        if key in config:
            row[key] = config[key]
    if isinstance(config.get("noise"), dict):
        row.update({f"noise.{k}": v for k, v in config["noise"].items() if not isinstance(v, (dict, list))})

    metrics_path, error_path = job_dir / METRICS_FILE, job_dir / ERROR_FILE
    if error_path.is_file():
        lines = [l for l in error_path.read_text(errors="replace").strip().splitlines() if l.strip()]
        row["status"], row["error"] = "failed", (lines[-1] if lines else "error.txt is empty")
    elif metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            row["status"], row["error"] = "unreadable", f"{METRICS_FILE}: {e}"
        else:
            row["status"] = "ok"
            row["model"] = metrics.get("model") or row["model"]
            row["dataset"] = metrics.get("dataset") or row["dataset"]
            if metrics.get("seed") is not None:
                row["seed"] = metrics["seed"]
            for stage in STAGES:
                row.update({f"{stage}/{k}": v for k, v in (metrics.get(stage) or {}).items()})
            row.update({k: metrics.get(k) for k in RUN_FIELDS})
            row["wall_seconds"] = _wall_seconds(job_dir)
            row.update({k: v for k, v in (metrics.get("uncertainty") or {}).items()})
    return row


def _wall_seconds(job_dir: Path) -> float | None:
    """Job start (its config snapshot) to end (metrics.json), from file times."""
    start, end = job_dir / ".hydra" / "config.yaml", job_dir / METRICS_FILE
    if not start.is_file():
        return None
    return round(end.stat().st_mtime - start.stat().st_mtime, 1)


def expand_plan(params: dict, task_overrides: list[str], config_loader=None) -> list[list[str]]:
    """Every job's overrides, in job-number order, as Hydra's BasicSweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [f"{k}={v}" for k, v in (params or {}).items()] + [str(o) for o in task_overrides]
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def read_plan(sweep_dir: Path) -> tuple[list[list[str]] | None, str | None]:
    """The planned jobs: `sweep_plan.json`, else re-expanded from `multirun.yaml` (no globs)."""
    plan_path = sweep_dir / PLAN_FILE
    if plan_path.is_file():
        try:
            return json.loads(plan_path.read_text())["jobs"], None
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            return None, f"{plan_path}: unreadable ({e}); missing jobs cannot be listed"
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.is_file():
        return None, f"{sweep_dir}: no {PLAN_FILE} or multirun.yaml; jobs that never started cannot be listed"
    cfg = _load_yaml(multirun) or {}
    hydra = cfg.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None, f"{multirun}: sweeper {sweeper.get('_target_')} is not BasicSweeper; plan unknown"
    try:
        return expand_plan(sweeper.get("params") or {}, (hydra.get("overrides") or {}).get("task") or []), None
    except Exception as e:  # noqa: BLE001 - e.g. glob() sweeps need the config loader
        return None, f"{multirun}: cannot re-expand the sweep ({e}); jobs that never started cannot be listed"


def _planned_row(sweep_dir: Path, num: int, overrides: list[str]) -> dict:
    values = parse_overrides(overrides)
    return {"job": f"{num}", "num": num, "path": str(sweep_dir), "status": "missing",
            "error": "never started (no job dir)", "model": values.get("model"),
            "dataset": values.get("dataset"), "seed": values.get("seed"), "variant": None,
            "overrides": " ".join(overrides), **{f"override:{k}": v for k, v in values.items()}}


def collect_sweep(sweep_dir: str | Path) -> Sweep:
    """All jobs of one sweep dir (a single run dir counts as a one-job sweep)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: not a directory; expected a Hydra multirun dir "
                                f"(outputs/multiruns/<stamp>) or a run dir")
    job_dirs = [sweep_dir] if is_job_dir(sweep_dir) and (sweep_dir / ".hydra").is_dir() and \
        not (sweep_dir / "multirun.yaml").is_file() else sorted(p for p in sweep_dir.iterdir() if is_job_dir(p))
    rows = [read_job(d) for d in job_dirs]
    notes: list[str] = []
    plan, note = read_plan(sweep_dir) if job_dirs != [sweep_dir] else (None, None)
    if note:
        notes.append(note)
    if plan is not None:
        found = {r["num"] for r in rows}
        rows += [_planned_row(sweep_dir, i, job) for i, job in enumerate(plan) if i not in found]
    jobs = pd.DataFrame(rows)
    if jobs.empty:
        jobs = pd.DataFrame(columns=["job", "num", "path", "status", "error", "model", "dataset", "seed"])
    swept = swept_keys(jobs, plan)
    return Sweep(jobs=_finish(jobs, swept), swept=swept, notes=notes)


def swept_keys(jobs: pd.DataFrame, plan: list[list[str]] | None) -> list[str]:
    """Override keys that take more than one value over the sweep (plan first, else found jobs)."""
    if plan:
        values: dict[str, set] = {}
        for job in plan:
            for k, v in parse_overrides(job).items():
                values.setdefault(k, set()).add(str(v))
        return [k for k, v in values.items() if len(v) > 1]
    cols = [c for c in jobs.columns if c.startswith("override:")]
    return [c.split(":", 1)[1] for c in cols if jobs[c].astype(str).nunique(dropna=False) > 1]


def _finish(jobs: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """Swept overrides as plain columns, a row label, a stable order."""
    jobs = jobs.copy()
    for key in swept:
        col = f"override:{key}"
        if key not in jobs.columns and col in jobs.columns:
            jobs[key] = jobs[col]
        elif col in jobs.columns:  # a config value (e.g. lambda_kl) is already there; fill gaps
            jobs[key] = jobs[key].where(jobs[key].notna(), jobs[col])
    jobs = jobs.drop(columns=[c for c in jobs.columns if c.startswith("override:")])
    if "variant" not in jobs.columns:
        jobs["variant"] = None
    jobs["label"] = [v if isinstance(v, str) and v else m for v, m in zip(jobs["variant"], jobs["model"])]
    return jobs.sort_values(["num", "job"], na_position="last", kind="stable").reset_index(drop=True)


def collect(sweep_dirs: list[str | Path]) -> Sweep:
    """Several sweep dirs as one (e.g. table2 run per dataset in separate sweeps)."""
    parts = [collect_sweep(d) for d in sweep_dirs]
    if len(parts) == 1:
        return parts[0]
    swept = list(dict.fromkeys(k for p in parts for k in p.swept))
    for key in ("dataset",):
        datasets = {d for p in parts for d in p.jobs["dataset"].dropna().unique()}
        if len(datasets) > 1 and key not in swept:
            swept.append(key)
    jobs = pd.concat([p.jobs for p in parts], ignore_index=True)
    for key in swept:
        if key not in jobs.columns:
            jobs[key] = None
    return Sweep(jobs=jobs, swept=swept, notes=[n for p in parts for n in p.notes])
