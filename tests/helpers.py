"""Helpers for tests that run the training entry point in-process."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]


def train_config(tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The composed `conf/train.yaml` with its run dir in tmp_path (as `hydra.run.dir=` would)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train.yaml", return_hydra_config=True,
                      overrides=[f"hydra.run.dir={tmp_path}", "logger=csv", *overrides])
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            cfg.paths.data_dir = str(ROOT / "data")
            del cfg.hydra
    return cfg


def naive_metrics(topk: dict[int, list[int]], relevant: dict[int, set[int]], k: int) -> dict[str, float]:
    """Recall/NDCG/Precision/MAP@k averaged over users, written out loop by loop."""
    import math
    sums = {"recall": 0.0, "ndcg": 0.0, "precision": 0.0, "map": 0.0}
    for user, rel in relevant.items():
        ranked = topk[user][:k]
        hits = [item in rel for item in ranked]
        sums["recall"] += sum(hits) / len(rel)
        sums["precision"] += sum(hits) / k
        dcg = sum(1 / math.log2(i + 2) for i, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
        sums["ndcg"] += dcg / idcg
        ap, found = 0.0, 0
        for i, h in enumerate(hits):
            if h:
                found += 1
                ap += found / (i + 1)
        sums["map"] += ap / min(len(rel), k)
    return {f"{name}@{k}": v / len(relevant) for name, v in sums.items()}
