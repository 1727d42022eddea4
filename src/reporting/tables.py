"""Paper-shaped tables (Table 2 / Table 3) from the collected jobs.

Per section (a dataset, plus any swept setting such as a noise level when several models are
compared) and row (a model, or an ablation variant; or a setting when the sweep has one model):
mean ± sample standard deviation (ddof=1) over seeds of Recall@10/20 and NDCG@10/20. Best mean
of a column in bold, second best underlined. When a reference row (SPUMR) is present with
other rows: its relative improvement over the strongest other row of each column, and a `*`
where a two-sided paired t-test over seeds (scipy.stats.ttest_rel, runs paired by seed)
against that row gives p < 0.05.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
SHORT = {"recall": "R", "ndcg": "N", "precision": "P", "map": "MAP"}
# DESIGN.md's model names in the order the paper's tables list them; others follow, sorted
MODEL_ORDER = ("pop", "mf", "lightgcn", "vbpr", "mmgcn", "freedom", "bm3", "lgmrec", "damrs",
               "w/o MSG", "w/o CSG", "w/o UPA")  # then Table 3's ablation variants (conf/ablation/)
DISPLAY = {"pop": "Pop", "mf": "MF-BPR", "lightgcn": "LightGCN", "vbpr": "VBPR", "mmgcn": "MMGCN",
           "freedom": "FREEDOM", "bm3": "BM3", "lgmrec": "LGMRec", "damrs": "DA-MRS", "spumr": "SPUMR"}
ALPHA = 0.05


def display_name(label: str) -> str:
    return DISPLAY.get(str(label), str(label))


def metric_header(metric: str) -> str:
    name, k = metric.split("@")
    return f"{SHORT.get(name, name)}@{k}"


@dataclass
class PairedTest:
    """Paired t-test of the reference against one row over their common seeds."""

    other: str
    n: int
    t: float
    p: float


def paired_ttest(ref: pd.Series, other: pd.Series) -> tuple[float, float, int]:
    """Two-sided `ttest_rel` over the seeds present in both series (indexed by seed).

    Returns (t, p, n); t and p are NaN with fewer than 2 common seeds or when the differences
    are the same for every seed (up to rounding; the test is undefined there).
    """
    common = ref.index.intersection(other.index)
    if len(common) < 2:
        return math.nan, math.nan, len(common)
    a, b = ref.loc[common].to_numpy(float), other.loc[common].to_numpy(float)
    d = a - b
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # identical differences: t is 0/0 or ±inf
        return math.nan, math.nan, len(common)
    res = stats.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue), len(common)


def _setting_name(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={_fmt_value(row[k])}" for k in keys)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _row_order(labels: list[str], reference: str | None) -> list[str]:
    def key(label: str):
        if reference is not None and label == reference:
            return (2, 0, "")
        if label in MODEL_ORDER:
            return (0, MODEL_ORDER.index(label), "")
        return (1, 0, str(label))
    return sorted(labels, key=key)


def find_reference(labels, reference: str | None) -> str | None:
    """The row label matching `reference` case-insensitively (e.g. 'spumr' matches 'SPUMR')."""
    if not reference:
        return None
    for label in labels:
        if str(label).lower() == reference.lower():
            return label
    return None


def sections(ok: pd.DataFrame, settings: list[str]) -> list[tuple[str, pd.DataFrame, str]]:
    """Split the jobs into table sections: (title, jobs, row column).

    Several labels (models or variants): a section per dataset and setting, a row per label.
    A single label: a section per dataset, a row per setting (e.g. a λ grid).
    """
    ok = ok.copy()
    keys = [k for k in settings if k in ok.columns and ok[k].astype(str).nunique() > 1]
    out = []
    if ok["label"].nunique() > 1 or not keys:
        groups = ok.groupby(["dataset", *keys], sort=True, dropna=False) if keys else ok.groupby("dataset", sort=True)
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            title = str(key[0]) + "".join(f" · {k}={_fmt_value(v)}" for k, v in zip(keys, key[1:]))
            out.append((title, part, "label"))
    else:
        ok["setting"] = [_setting_name(r, keys) for _, r in ok.iterrows()]
        for dataset, part in ok.groupby("dataset", sort=True):
            out.append((f"{dataset} · {part['label'].iloc[0]}", part, "setting"))
    return out


def aggregate(jobs: pd.DataFrame, row: str, metrics: list[str]) -> pd.DataFrame:
    """mean, std (ddof=1) and n over seeds per row, columns `<metric>:mean|std|n`."""
    out = {}
    for name, part in jobs.groupby(row, sort=False):
        rec = {}
        for m in metrics:
            values = part[m].dropna().astype(float) if m in part else pd.Series(dtype=float)
            rec[f"{m}:mean"] = values.mean() if len(values) else math.nan
            rec[f"{m}:std"] = values.std(ddof=1) if len(values) > 1 else math.nan
            rec[f"{m}:n"] = len(values)
        out[name] = rec
    return pd.DataFrame.from_dict(out, orient="index")


def _ranks(means: pd.Series) -> tuple[set, set]:
    """Row labels holding the best and the second best distinct mean (NaN ignored)."""
    distinct = sorted({v for v in means if not math.isnan(v)}, reverse=True)
    best = {r for r, v in means.items() if distinct and v == distinct[0]}
    second = {r for r, v in means.items() if len(distinct) > 1 and v == distinct[1]}
    return best, second


def _cell(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not math.isnan(std) else f"{mean:.{digits}f}"


def section_table(jobs: pd.DataFrame, row: str, stage: str = "test", reference: str | None = "spumr",
                  metrics: tuple[str, ...] = TABLE_METRICS, digits: int = 4) -> tuple[str, list[str]]:
    """One markdown table and its notes (strongest other row and p-value per column)."""
    cols = [f"{stage}/{m}" for m in metrics]
    jobs = jobs.assign(**{c: math.nan for c in cols if c not in jobs.columns})  # shown as "–"
    agg = aggregate(jobs, row, cols)
    labels = list(agg.index)
    ref = find_reference(labels, reference) if row == "label" else None
    order = _row_order(labels, ref) if row == "label" else labels
    ranks = {c: _ranks(agg[f"{c}:mean"]) for c in cols}

    stars: dict[str, bool] = {}
    improv: dict[str, str] = {}
    notes: list[str] = []
    if ref is not None and len(labels) > 1:
        by_seed = {lab: part.groupby("seed")[cols].mean() for lab, part in jobs.groupby(row)}
        for c, m in zip(cols, metrics):
            others = agg.drop(index=ref)[f"{c}:mean"].dropna()
            if others.empty or math.isnan(agg.loc[ref, f"{c}:mean"]):
                continue
            strongest = others.idxmax()  # first on ties, in aggregate order
            base, mine = others[strongest], agg.loc[ref, f"{c}:mean"]
            improv[c] = f"{(mine - base) / base * 100:+.2f}%" if base else "–"
            t, p, n = paired_ttest(by_seed[ref][c].dropna(), by_seed[strongest][c].dropna())
            stars[c] = bool(p < ALPHA and mine > base) if not math.isnan(p) else False
            p_text = f"p = {p:.4g}" if not math.isnan(p) else "p n/a"
            notes.append(f"{metric_header(m)}: vs {display_name(strongest)}, {p_text} (t = {t:.3f}, n = {n})"
                         if not math.isnan(p) else f"{metric_header(m)}: vs {display_name(strongest)}, "
                         f"{p_text} (n = {n} common seeds)")

    head = "Model" if row == "label" else "Setting"
    lines = [f"| {head} | " + " | ".join(metric_header(m) for m in metrics) + " | seeds |",
             "|---|" + "---:|" * len(metrics) + "---:|"]
    for lab in order:
        cells = []
        for c in cols:
            text = _cell(agg.loc[lab, f"{c}:mean"], agg.loc[lab, f"{c}:std"], digits)
            best, second = ranks[c]
            if lab in best:
                text = f"**{text}**"
            elif lab in second:
                text = f"<u>{text}</u>"
            if lab == ref and stars.get(c):
                text += "\\*"
            cells.append(text)
        n = int(max(agg.loc[lab, f"{c}:n"] for c in cols))
        name = display_name(lab) if row == "label" else str(lab)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {n} |")
    if improv:
        lines.append("| Improv. | " + " | ".join(improv.get(c, "–") for c in cols) + " | |")
    return "\n".join(lines), notes


def markdown_report(ok: pd.DataFrame, settings: list[str], problems: pd.DataFrame, stage: str = "test",
                    reference: str | None = "spumr", title: str = "Results") -> str:
    """The whole table.md: a section per dataset (and setting), then the jobs left out."""
    out = [f"# {title}", ""]
    if ok.empty:
        out += ["No finished job yet.", ""]
    has_ref = False
    for name, part, row in sections(ok, settings) if not ok.empty else []:
        table, notes = section_table(part, row, stage, reference)
        has_ref |= bool(notes)
        out += [f"## {name}", "", table, ""]
        if notes:
            out += ["Paired t-test of " + display_name(find_reference(part["label"].unique(), reference))
                    + " against the strongest other row, per column: " + "; ".join(notes) + ".", ""]
    out += [f"{stage.capitalize()} metrics at the best validation epoch. Mean ± sample standard deviation "
            "(ddof = 1) over seeds; `seeds` is the number of runs per row (a single run shows no std). "
            "Best mean per column in **bold**, second best <u>underlined</u>."]
    if has_ref:
        out += ["Improv.: relative improvement of the reference row's mean over the strongest other row "
                "of the column. \\*: p < 0.05 in a two-sided paired t-test (scipy.stats.ttest_rel) "
                "against that row over the seeds both have, runs paired by seed."]
    out.append("")
    if not ok.empty:
        out += [timing_table(ok), ""]
    if not problems.empty:
        out += ["## Jobs not in the table", "", "| job | status | overrides | error |", "|---|---|---|---|"]
        for _, r in problems.iterrows():
            err = str(r.get("error", "") or "").replace("|", "\\|")[:200]
            out.append(f"| {r['job']} | {r['status']} | {r.get('overrides', '') or ''} | {err} |")
        out.append("")
    return "\n".join(out)


def timing_table(ok: pd.DataFrame) -> str:
    """Per dataset and row label: runs, mean epochs, best epoch, seconds per epoch, wall minutes."""
    cols = {"epochs": "epochs", "best_epoch": "best epoch", "seconds_per_epoch": "s/epoch",
            "wall_seconds": "wall min/run"}
    lines = ["## Run times", "", "| dataset | row | runs | " + " | ".join(cols.values()) + " |",
             "|---|---|---:|" + "---:|" * len(cols)]
    for (dataset, label), part in ok.groupby(["dataset", "label"], sort=True, dropna=False):
        cells = []
        for c in cols:
            v = part[c].astype(float).mean() if c in part and part[c].notna().any() else math.nan
            if c == "wall_seconds":
                v = v / 60
            cells.append("–" if math.isnan(v) else f"{v:.2f}" if c == "seconds_per_epoch" else f"{v:.1f}")
        lines.append(f"| {dataset} | {display_name(label)} | {len(part)} | " + " | ".join(cells) + " |")
    lines += ["", "Means over the row's runs; `s/epoch` is training time only (evaluation excluded); "
              "wall time runs from the job's config snapshot to its metrics.json."]
    return "\n".join(lines)
