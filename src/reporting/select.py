"""Pick the best setting of a grid sweep on a VALIDATION metric (never on test).

For each (dataset, model) with swept settings (keys other than model, dataset, seed, variant,
and conditions such as noise levels),
settings are ranked by the mean over seeds of the selection metric (default val/recall@20);
ties go to the setting met first in job order. The test metrics of the chosen setting are
reported alongside, for information only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from src.reporting.tables import TABLE_METRICS, display_name, metric_header

# swept keys that are experimental conditions, not hyper-parameters to choose
CONDITIONS = ("noise.",)


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def select_best(ok: pd.DataFrame, settings: list[str], metric: str = "val/recall@20") -> list[dict]:
    """One record per (dataset, model): the chosen setting and every setting's ranking."""
    if not metric.startswith("val/"):
        raise ValueError(f"selection metric must be a validation metric (val/...), got {metric!r}; "
                         f"selecting on test would leak the test set into the choice")
    keys = [k for k in settings if k in ok.columns and ok[k].astype(str).nunique() > 1
            and not k.startswith(CONDITIONS)]
    if not keys or metric not in ok.columns or ok.empty:
        return []
    records = []
    for (dataset, label), part in ok.groupby(["dataset", "label"], sort=True):
        part = part.assign(_order=range(len(part)))
        grouped = part.groupby(keys, sort=False, dropna=False)
        ranking = []
        for values, rows in grouped:
            values = values if isinstance(values, tuple) else (values,)
            rec = {"setting": {k: _clean(v) for k, v in zip(keys, values)},
                   "overrides": " ".join(f"{k}={_clean(v)}" for k, v in zip(keys, values)),
                   "n_seeds": int(rows[metric].notna().sum()),
                   "seeds": sorted(_clean(s) for s in rows["seed"].dropna().unique()),
                   metric: float(rows[metric].mean()),
                   "first_job": int(rows["_order"].min())}
            rec["test"] = {m: float(rows[f"test/{m}"].mean()) for m in TABLE_METRICS if f"test/{m}" in rows}
            ranking.append(rec)
        ranking.sort(key=lambda r: (-r[metric] if not math.isnan(r[metric]) else math.inf, r["first_job"]))
        for r in ranking:
            del r["first_job"]
        records.append({"dataset": dataset, "model": label, "metric": metric, "best": ranking[0],
                        "ranking": ranking})
    return records


def best_markdown(records: list[dict]) -> str:
    out = ["# Best settings (selected on validation)", ""]
    for rec in records:
        metric = rec["metric"]
        out += [f"## {display_name(rec['model'])} on {rec['dataset']}", "",
                f"Chosen: `{rec['best']['overrides']}` with {metric} = {rec['best'][metric]:.4f} "
                f"(mean over {rec['best']['n_seeds']} run(s)). Ranked by mean {metric}; test metrics "
                f"are shown for information and played no part in the choice.", "",
                f"| rank | setting | {metric} | runs | " + " | ".join(f"test {metric_header(m)}" for m in TABLE_METRICS)
                + " |", "|---:|---|---:|---:|" + "---:|" * len(TABLE_METRICS)]
        for i, r in enumerate(rec["ranking"], 1):
            tests = " | ".join(f"{r['test'][m]:.4f}" if m in r["test"] else "–" for m in TABLE_METRICS)
            setting = f"**{r['overrides']}**" if i == 1 else r["overrides"]
            out.append(f"| {i} | {setting} | {r[metric]:.4f} | {r['n_seeds']} | {tests} |")
        out.append("")
    return "\n".join(out)


def write_selection(records: list[dict], out_dir: Path) -> list[Path]:
    if not records:
        return []
    (out_dir / "best.json").write_text(json.dumps(records, indent=2) + "\n")
    (out_dir / "best.md").write_text(best_markdown(records))
    return [out_dir / "best.json", out_dir / "best.md"]
