"""PNG figures from the collected jobs (matplotlib, Agg backend; no display needed).

- `sensitivity_<dataset>.png` (the paper's Fig. 3 shape): a metric against λ_KL, one line per
  fixed λ_U, and against λ_U, one line per fixed λ_KL (means over seeds).
- `noise_<dataset>.png` (RQ4): accuracy against the noise level, one line per model; SPUMR's
  gate weight per modality against the noise level.
- `gate_sigma.png`: per modality, the mean gate weight against the mean σ, one point per job.
Each function returns the files it wrote (none when the sweep has nothing to plot).
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.reporting.tables import display_name, metric_header  # noqa: E402

NOISE_LEVEL_KEYS = ("noise.fraction", "noise.scale")


def _varying(df: pd.DataFrame, key: str) -> bool:
    return key in df.columns and df[key].dropna().astype(float).nunique() > 1


def _nice_metric(metric: str) -> str:
    stage, name = metric.split("/", 1)
    return f"{stage} {metric_header(name)}"


def sensitivity_figures(ok: pd.DataFrame, out_dir: Path, metric: str = "test/recall@20") -> list[Path]:
    """Fig. 3 shape, one PNG per dataset where λ_KL or λ_U varies."""
    written = []
    if metric not in ok.columns:
        return written
    for dataset, part in ok.groupby("dataset"):
        axes_spec = [(x, other) for x, other in (("lambda_kl", "lambda_u"), ("lambda_u", "lambda_kl"))
                     if _varying(part, x)]
        if not axes_spec:
            continue
        means = part.groupby(["lambda_kl", "lambda_u"])[metric].mean().reset_index()
        fig, axes = plt.subplots(1, len(axes_spec), figsize=(5 * len(axes_spec), 3.8), squeeze=False)
        for ax, (x, other) in zip(axes[0], axes_spec):
            for fixed, line in means.groupby(other):
                line = line.sort_values(x)
                ax.plot(line[x], line[metric], marker="o", label=f"{_greek(other)} = {fixed:g}")
            ax.set_xscale("log")
            ax.set_xlabel(_greek(x))
            ax.set_ylabel(_nice_metric(metric))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"Sensitivity on {dataset}")
        fig.tight_layout()
        path = out_dir / f"sensitivity_{_safe(dataset)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _greek(key: str) -> str:
    return {"lambda_kl": "λ_KL", "lambda_u": "λ_U"}.get(key, key)


def _safe(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))


def modality_keys(columns, kind: str) -> dict[str, str]:
    """{modality: column} for `gate` or `sigma` statistics, preferring the users' mean
    `<kind>/<m>_user_mean`, else `<kind>/<m>_mean`."""
    found: dict[str, str] = {}
    for suffix in ("_user_mean", "_mean"):
        for c in columns:
            m = re.fullmatch(rf"{kind}/(.+?){suffix}", str(c))
            if m and m.group(1) not in found and not m.group(1).endswith(("_user", "_item")):
                found[m.group(1)] = c
    return found


def noise_figures(ok: pd.DataFrame, out_dir: Path, metric: str = "test/recall@20") -> list[Path]:
    """Accuracy and gate weight against the noise level, one PNG per dataset (and kind)."""
    written = []
    level = next((k for k in NOISE_LEVEL_KEYS if _varying(ok, k)), None)
    if level is None or metric not in ok.columns:
        return written
    group_keys = ["dataset"] + [k for k in ("noise.modality", "noise.kind") if k in ok.columns]
    for key, part in ok.groupby(group_keys, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        gates = modality_keys(part.dropna(axis=1, how="all").columns, "gate")
        n_panels = 2 if gates else 1
        fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 3.8), squeeze=False)
        ax = axes[0][0]
        for label, rows in part.groupby("label"):
            stats = rows.groupby(level)[metric].agg(["mean", "std", "count"]).reset_index().sort_values(level)
            ax.errorbar(stats[level], stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3,
                        label=display_name(label))
        ax.set_xlabel(level)
        ax.set_ylabel(_nice_metric(metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if gates:
            ax = axes[0][1]
            for label, rows in part.groupby("label"):
                for modality, col in gates.items():
                    stats = rows.groupby(level)[col].mean().dropna()
                    if not stats.empty:
                        ax.plot(stats.index, stats.values, marker="o",
                                label=f"{display_name(label)}: {modality}")
            ax.set_xlabel(level)
            ax.set_ylabel("mean gate weight")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(" · ".join(f"{k}={v}" for k, v in zip(group_keys, key)))
        fig.tight_layout()
        path = out_dir / ("noise_" + "_".join(_safe(v) for v in key) + ".png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def gate_sigma_figure(ok: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per modality, the job's mean gate weight against its mean σ (one point per job)."""
    cols = ok.dropna(axis=1, how="all").columns
    gates, sigmas = modality_keys(cols, "gate"), modality_keys(cols, "sigma")
    modalities = [m for m in gates if m in sigmas]
    if not modalities:
        return []
    level = next((k for k in NOISE_LEVEL_KEYS if _varying(ok, k)), None)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for modality in modalities:
        rows = ok[[gates[modality], sigmas[modality]] + ([level] if level else [])].dropna(
            subset=[gates[modality], sigmas[modality]])
        ax.scatter(rows[sigmas[modality]], rows[gates[modality]], label=modality, alpha=0.8)
        if level:
            for _, r in rows.iterrows():
                ax.annotate(f"{r[level]:g}", (r[sigmas[modality]], r[gates[modality]]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("mean σ (users)")
    ax.set_ylabel("mean gate weight")
    ax.set_title("Gate weight against σ per modality" + (f" (labels: {level})" if level else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out_dir / "gate_sigma.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def all_figures(ok: pd.DataFrame, out_dir: Path, metric: str = "test/recall@20") -> list[Path]:
    if ok.empty:
        return []
    return (sensitivity_figures(ok, out_dir, metric) + noise_figures(ok, out_dir, metric)
            + gate_sigma_figure(ok, out_dir))
