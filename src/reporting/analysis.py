"""Per-run analyses behind `src/visualize.py`: t-SNE of user embeddings (the paper's Fig. 4)
and the σ-versus-error check (does a user's uncertainty track how badly they are served?).

Model access is duck-typed, so nothing is added to model files beyond the optional
`Recommender.final_embeddings()`:
- user embeddings: `net.user_embeddings()` if the model has it, else `net.final_embeddings()[0]`;
- per-user σ: `net.user_uncertainty() -> {modality: [n_users]}` if the model has it, else the
  `sigma/<modality>_user` tensors of `net.eval_histograms()` that have one value per user.
All are read between `prepare_eval()` and `end_eval()`, under `torch.no_grad()`.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from src.data.formats import RecData  # noqa: E402
from src.metrics.ranking import hits_from_topk, per_user_metrics  # noqa: E402
from src.utils.outputs import read_topk  # noqa: E402


class NotSupported(RuntimeError):
    """The model does not expose what an analysis needs."""


# ---------------------------------------------------------------------------- model access
@torch.no_grad()
def user_embeddings(net) -> np.ndarray:
    """Final user embeddings `[n_users, d]` as float64 numpy."""
    net.prepare_eval()
    try:
        if hasattr(net, "user_embeddings"):
            users = net.user_embeddings()
        else:
            try:
                users, _ = net.final_embeddings()
            except NotImplementedError as e:
                raise NotSupported(f"{type(net).__name__}: no user_embeddings() or final_embeddings() "
                                   f"({e})") from None
    finally:
        net.end_eval()
    return users.detach().double().cpu().numpy()


@torch.no_grad()
def user_sigma(net, n_users: int) -> dict[str, np.ndarray]:
    """Per-user σ per modality, `{modality: [n_users]}`."""
    net.prepare_eval()
    try:
        if hasattr(net, "user_uncertainty"):
            found = dict(net.user_uncertainty())
        else:
            found = {m.group(1): t for k, t in net.eval_histograms().items()
                     if (m := re.fullmatch(r"sigma/(.+)_user", k))}
    finally:
        net.end_eval()
    out = {m: t.detach().double().cpu().numpy().reshape(-1) for m, t in found.items()}
    out = {m: v for m, v in out.items() if v.shape[0] == n_users}
    if not out:
        raise NotSupported(f"{type(net).__name__}: no per-user σ (expected user_uncertainty() -> "
                           f"{{modality: [n_users]}} or eval_histograms() keys 'sigma/<modality>_user' "
                           f"with {n_users} values)")
    return out


# ---------------------------------------------------------------------------- t-SNE
def tsne_figure(embeddings: dict[str, np.ndarray | str], degrees: np.ndarray, out_png: Path,
                n_users: int = 500, seed: int = 0) -> pd.DataFrame:
    """t-SNE of the same `n_users` random users for each run, side by side; one panel per run.

    `embeddings` maps a panel title to `[n_users_total, d]` (or to a message for runs whose
    model is not supported). Points are coloured by the user's number of training
    interactions (log scale). Returns the 2-D coordinates (run, user, x, y).
    """
    from sklearn.manifold import TSNE

    total = len(degrees)
    users = np.sort(np.random.default_rng(seed).choice(total, size=min(n_users, total), replace=False))
    fig, axes = plt.subplots(1, len(embeddings), figsize=(4.2 * len(embeddings), 4.2), squeeze=False)
    rows, points = [], None
    for ax, (title, emb) in zip(axes[0], embeddings.items()):
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if isinstance(emb, str):
            ax.text(0.5, 0.5, emb, ha="center", va="center", wrap=True, fontsize=8, transform=ax.transAxes)
            continue
        if emb.shape[0] != total:
            raise ValueError(f"{title}: {emb.shape[0]} users, expected {total} (runs must share a dataset)")
        xy = TSNE(n_components=2, perplexity=min(30.0, len(users) - 1.0), init="pca",
                  random_state=seed).fit_transform(emb[users])
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.log1p(degrees[users]), s=6, cmap="viridis")
        rows += [{"run": title.replace("\n", " "), "user": int(u), "x": float(x), "y": float(y)} for u, (x, y) in zip(users, xy)]
    if points is not None:
        fig.colorbar(points, ax=axes[0].tolist(), label="log(1 + training interactions)")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return pd.DataFrame(rows, columns=["run", "user", "x", "y"])


# ---------------------------------------------------------------------------- σ vs error
def per_user_test_metrics(topk_path: Path, data: RecData, ks=(10, 20)) -> pd.DataFrame:
    """Per test user: recall@k and ndcg@k from the run's topk.tsv and the dataset's test split."""
    topk = read_topk(topk_path)
    users = np.array(sorted(topk), dtype=np.int64)
    lists = torch.tensor([topk[u] for u in users.tolist()], dtype=torch.long)
    target = data.test.matrix(data.n_users, data.n_items)[users]
    ptr = torch.from_numpy(target.indptr.astype(np.int64))
    idx = torch.from_numpy(target.indices.astype(np.int64))
    if bool((ptr[1:] == ptr[:-1]).any()):
        raise ValueError(f"{topk_path}: lists users with no test item; does it belong to this dataset?")
    values = per_user_metrics(hits_from_topk(lists, ptr, idx), ptr[1:] - ptr[:-1], ks)
    frame = pd.DataFrame({k: v.numpy() for k, v in values.items() if k.split("@")[0] in ("recall", "ndcg")})
    frame.insert(0, "user", users)
    return frame


def sigma_error_table(sigma: dict[str, np.ndarray], metrics: pd.DataFrame, n_train: np.ndarray,
                      metric: str = "ndcg@20") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user table (σ per modality, error = 1 - metric) and the correlations per modality.

    Correlations (Pearson and Spearman, scipy) are between σ and the error over the test users.
    """
    table = metrics.copy()
    table.insert(1, "n_train", n_train[table["user"].to_numpy()])
    table["error"] = 1.0 - table[metric]
    rows = []
    for modality, values in sigma.items():
        col = f"sigma_{modality}"
        table[col] = values[table["user"].to_numpy()]
        pearson = stats.pearsonr(table[col], table["error"])
        spearman = stats.spearmanr(table[col], table["error"])
        rows.append({"modality": modality, "n_users": len(table), "error": f"1 - {metric}",
                     "pearson_r": float(pearson.statistic), "pearson_p": float(pearson.pvalue),
                     "spearman_rho": float(spearman.statistic), "spearman_p": float(spearman.pvalue)})
    return table, pd.DataFrame(rows)


def sigma_error_figure(table: pd.DataFrame, corr: pd.DataFrame, out_png: Path, bins: int = 10) -> None:
    """Per modality: σ against error (points) with the mean error per σ decile (line)."""
    mods = list(corr["modality"])
    fig, axes = plt.subplots(1, len(mods), figsize=(4.5 * len(mods), 3.8), squeeze=False)
    for ax, (_, c) in zip(axes[0], corr.iterrows()):
        x, y = table[f"sigma_{c['modality']}"], table["error"]
        ax.scatter(x, y, s=5, alpha=0.4)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        if len(edges) > 2:
            which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
            means = pd.DataFrame({"b": which, "x": x, "y": y}).groupby("b").mean()
            ax.plot(means["x"], means["y"], color="C3", marker="o", label="mean per σ decile")
            ax.legend(fontsize=7)
        ax.set_xlabel(f"σ ({c['modality']}), per user")
        ax.set_ylabel(c["error"])
        ax.set_title(f"{c['modality']}: Spearman ρ = {c['spearman_rho']:.3f} (p = {c['spearman_p']:.2g})",
                     fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
