"""Benchmark models on synthetic data: graph build, training epoch, evaluation pass, memory.

    python src/bench.py --scale baby_scale --models spumr,lightgcn --out outputs/bench
    make bench BENCH_ARGS="--scale baby_scale,clothing_scale --epochs 3"

For each model x scale, one fresh worker process (so peak memory, threads and caches are its
own) composes the real config (`conf/train.yaml`, `dataset=synthetic dataset.preset=<scale>`,
`model=<name>`, plus `--override`s) and measures:

* graph_build_s: time inside the `GraphStore` builders with a cold cache (a fresh temporary
  cache directory, so it includes writing the cache files); setup_s: the whole model
  construction (graph builds, normalisation, SPUMR's fast-path tables, parameters).
* epoch_s: the median of `--epochs` training epochs after `--warmup` epochs, run by a real
  Lightning `Trainer.fit` (datamodule sampler, `RecommenderModule.training_step`, optimizer)
  with validation off.
* eval_s: the median of `--eval-repeats` full evaluation passes over the validation users
  (every user with a validation item) and all items, as validation runs them:
  `prepare_eval`, then per batch of `dataset.eval_batch_size` users `RecommenderModule.rank`
  (scores, masking, top-k) and the ranking metric update, then `compute`.
* floors: the counted FLOPs (`src/utils/flops.py`; dense products 2mnk, sparse 2·nnz·d,
  forward and backward as run) divided by a 2048x2048 float32 matmul rate measured in the
  same worker. The epoch's FLOPs are the mean of `--flop-steps` counted steps times the steps
  per epoch; the evaluation's are counted over one (untimed) pass, plus one operation per
  score for the top-k selection.
* peak_mem_mb: the worker's peak resident memory over everything (loading, graphs, training,
  evaluation); train_peak_mb: the peak during training alone; gpu_peak_mb on a GPU.

Figures depend on the machine's load: the 1-minute load average is recorded with each row.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # large CPU tensors on huge pages (src/__init__.py)

DEFAULT_MODELS = ("mf", "lightgcn", "vbpr", "mmgcn", "freedom", "bm3", "lgmrec", "damrs", "spumr")
COLUMNS = ["model", "scale", "device", "threads", "graph_build_s", "setup_s", "epoch_s", "epoch_floor_s",
           "epoch_ratio", "eval_s", "eval_floor_s", "eval_ratio", "eval_prepare_s", "peak_mem_mb",
           "train_peak_mb", "gpu_peak_mb", "epoch_gflop", "eval_gflop", "matmul_gflops", "steps_per_epoch",
           "n_users", "n_items", "n_train", "n_eval_users", "epoch_times", "knn_recall", "load_start", "load_end",
           "overrides", "error"]
TABLE = [("model", "model", "{}"), ("scale", "scale", "{}"), ("dev", "device", "{}"),
         ("graphs s", "graph_build_s", "{:.1f}"), ("setup s", "setup_s", "{:.1f}"),
         ("epoch s", "epoch_s", "{:.2f}"), ("floor s", "epoch_floor_s", "{:.2f}"), ("x", "epoch_ratio", "{:.1f}"),
         ("eval s", "eval_s", "{:.2f}"), ("floor s", "eval_floor_s", "{:.2f}"), ("x", "eval_ratio", "{:.1f}"),
         ("peak MiB", "peak_mem_mb", "{:.0f}"), ("train MiB", "train_peak_mb", "{:.0f}"),
         ("GF/s", "matmul_gflops", "{:.0f}"), ("load", "load_start", "{:.1f}")]
log = logging.getLogger("bench")


# --------------------------------------------------------------------------- worker side

def compose(model: str, scale: str, data_dir: Path, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="train.yaml", overrides=[
            f"model={model}", "dataset=synthetic", f"dataset.preset={scale}",
            f"paths.data_dir={data_dir}", *overrides])


class GraphTimer:
    """Wraps `GraphStore.cached` on one store: seconds spent in top-level builds (nested
    `cached` calls inside a build are not counted twice)."""

    def __init__(self, store):
        self.seconds, self._depth, self._inner = 0.0, 0, store.cached
        store.cached = self

    def __call__(self, name, params, build):
        self._depth += 1
        t0 = time.perf_counter()
        try:
            return self._inner(name, params, build)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.perf_counter() - t0


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_epoch_flops(module, sampler, n_steps: int) -> float:
    """Mean counted FLOPs of `n_steps` training steps (forward + backward) x steps per epoch."""
    import torch
    from src.utils.flops import count_flops

    module.train()
    counts = []
    for i, (users, pos, neg) in enumerate(sampler.batches(0)):
        if i == n_steps:
            break
        with count_flops() as c:
            loss = torch.stack(list(module.net.loss_terms(users, pos, neg).values())).sum()
            loss.backward()
        counts.append(c.total)
    module.zero_grad(set_to_none=True)
    return statistics.fmean(counts) * len(sampler) if counts else 0.0


def eval_pass(module, batches, device) -> tuple[float, float]:
    """One full evaluation pass as validation runs it: (seconds, seconds in prepare_eval)."""
    import torch

    module.eval()
    with torch.inference_mode():
        _sync(device)
        t0 = time.perf_counter()
        module.net.prepare_eval()
        _sync(device)
        t1 = time.perf_counter()
        for batch in batches:
            module.val_metrics.update(module.rank(batch), batch["target_ptr"], batch["target_index"])
        module.val_metrics.compute()
        module.val_metrics.reset()
        module.net.end_eval()
        _sync(device)
        t2 = time.perf_counter()
    return t2 - t0, t1 - t0


def sample_users(batches, n: int, seed: int):
    """The same evaluation batches restricted to a random sample of `n` users (sorted)."""
    import torch
    from src.data.sampling import EvalBatches

    if n <= 0 or n >= len(batches.users):
        return batches
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(batches.users), generator=g)[:n].sort().values.to(batches.users.device)
    return EvalBatches(batches.users[keep], batches.exclude, batches.target, batches.batch_size)


def measure(args: argparse.Namespace) -> dict:
    """Everything for one model x scale, in this process."""
    import hydra
    import lightning as L
    import torch
    from src.data.cache import GraphCache
    from src.utils.flops import count_flops, matmul_rate
    from src.utils.memory import load_average, peak_rss_mb

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    row: dict = {"model": args.models, "scale": args.scale, "device": str(device),
                 "threads": torch.get_num_threads(), "load_start": round(load_average(), 2),
                 "overrides": " ".join(args.override)}
    cfg = compose(args.models, args.scale, Path(args.data_dir), args.override)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    row["matmul_gflops"] = matmul_rate(device) / 1e9

    dm = hydra.utils.instantiate(cfg.dataset)
    if args.eval_batch_size:
        dm.eval_batch_size = args.eval_batch_size
    dm.prepare_data()
    dm.setup("fit")
    data = dm.data
    row.update(n_users=data.n_users, n_items=data.n_items, n_train=len(data.train.users))
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache_dir:
        dm.graphs.cache = GraphCache(cache_dir, data.fingerprint)  # cold: nothing built yet
        dm.graphs.device = device
        timer = GraphTimer(dm.graphs)
        t0 = time.perf_counter()
        module = hydra.utils.instantiate(cfg.model, _partial_=True)(data=data, graphs=dm.graphs)
        module.to(device)
        _sync(device)
        row["setup_s"] = time.perf_counter() - t0
        row["graph_build_s"] = timer.seconds
    if dm.graphs.knn_recall:  # approximate (faiss) KNN lists: recall@k against exact on a sample
        row["knn_recall"] = " ".join(f"{k}={v:.4f}" for k, v in sorted(dm.graphs.knn_recall.items()))

    if module.net.trainable and args.epochs > 0:
        from src.data.sampling import BPRSampler
        sampler = BPRSampler(data.train.users, data.train.items, data.n_items, dm.train_batch_size,
                             seed=dm.seed, device=device)
        row["steps_per_epoch"] = len(sampler)
        flops = count_epoch_flops(module, sampler, args.flop_steps)
        row["epoch_gflop"] = flops / 1e9
        times, reset_ok = train_epochs(module, dm, cfg, device, args.warmup + args.epochs)
        times = times[args.warmup:]
        row["epoch_times"] = " ".join(f"{t:.3f}" for t in times)
        row["epoch_s"] = statistics.median(times)
        row["train_peak_mb"] = peak_rss_mb() if reset_ok else float("nan")
    batches = sample_users(dm.eval_batches("valid"), args.eval_users, cfg.seed)
    row["n_eval_users"] = len(batches.users)
    with count_flops() as c:  # the untimed warm-up pass
        eval_pass(module, batches, device)
    n_scores = len(batches.users) * data.n_items
    row["eval_gflop"] = (c.total + n_scores) / 1e9
    runs = [eval_pass(module, batches, device) for _ in range(args.eval_repeats)]
    row["eval_s"] = statistics.median(r[0] for r in runs)
    row["eval_prepare_s"] = statistics.median(r[1] for r in runs)

    rate = matmul_rate(device) / 1e9  # again at the end; the floor uses the faster of the two
    row["matmul_gflops"] = max(row["matmul_gflops"], rate)
    for kind in ("epoch", "eval"):
        if row.get(f"{kind}_s") is not None and row.get(f"{kind}_gflop") is not None:
            row[f"{kind}_floor_s"] = row[f"{kind}_gflop"] / row["matmul_gflops"]
            row[f"{kind}_ratio"] = row[f"{kind}_s"] / row[f"{kind}_floor_s"] if row[f"{kind}_floor_s"] else None
    row["peak_mem_mb"] = peak_rss_mb()
    if device.type == "cuda":
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    row["load_end"] = round(load_average(), 2)
    return row


def train_epochs(module, dm, cfg, device, n_epochs: int) -> tuple[list[float], bool]:
    """Seconds of each of `n_epochs` epochs of a real `Trainer.fit` (validation off), and
    whether the peak-memory mark could be reset before training."""
    import hydra
    import lightning as L
    from src.utils.memory import reset_peak_rss

    class EpochTimer(L.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            _sync(device)
            self.times.append(time.perf_counter() - self.t0)

    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
        trainer: L.Trainer = hydra.utils.instantiate(
            cfg.trainer, default_root_dir=run_dir, accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1, max_epochs=n_epochs, min_epochs=n_epochs, limit_val_batches=0, num_sanity_val_steps=0,
            logger=False, callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False)
        reset_ok = reset_peak_rss()
        trainer.fit(module, datamodule=dm)
    return timer.times, reset_ok


# --------------------------------------------------------------------------- driver side

def run_worker(args: argparse.Namespace, model: str, scale: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--models", model, "--scale", scale,
           "--device", args.device, "--epochs", str(args.epochs), "--warmup", str(args.warmup),
           "--eval-repeats", str(args.eval_repeats), "--flop-steps", str(args.flop_steps),
           "--data-dir", str(args.data_dir), "--threads", str(args.threads),
           "--eval-users", str(args.eval_users), "--eval-batch-size", str(args.eval_batch_size)]
    for o in args.override:
        cmd += ["--override", o]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    log_file = Path(args.out) / f"{model}@{scale}.log"   # the worker's progress (graph builds, faiss recall)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(run.stderr)
    for line in run.stdout.splitlines():
        if line.startswith("BENCH_ROW "):
            return json.loads(line[len("BENCH_ROW "):])
    tail = (run.stdout + run.stderr).strip().splitlines()[-15:]
    print(f"  {model} @ {scale} failed (exit {run.returncode}):\n    " + "\n    ".join(tail), file=sys.stderr)
    return {"model": model, "scale": scale, "device": args.device, "error": f"exit {run.returncode}: "
            + (tail[-1] if tail else "")}


def format_table(rows: list[dict]) -> str:
    def cell(row, key, fmt):
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        try:
            return fmt.format(v)
        except (ValueError, TypeError):
            return str(v)
    cells = [[h for h, _, _ in TABLE]] + [[cell(r, k, f) for _, k, f in TABLE] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE))]
    lines = ["  ".join(c[i].rjust(widths[i]) if i > 2 else c[i].ljust(widths[i]) for i in range(len(c)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors = [f"{r['model']} @ {r['scale']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines + (["", "errors:"] + errors if errors else []))


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in COLUMNS})


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="baby_scale",
                    help="synthetic presets, comma-separated (tiny, baby_scale, sports_scale, clothing_scale, ...)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="model config names, comma-separated")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench"), help="folder for bench.csv, bench.txt and the workers' logs")
    ap.add_argument("--epochs", type=int, default=3, help="timed training epochs (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed training epochs first")
    ap.add_argument("--eval-repeats", type=int, default=3, help="timed evaluation passes (median)")
    ap.add_argument("--flop-steps", type=int, default=8, help="training steps counted for the FLOP floor")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--eval-users", type=int, default=0,
                    help="evaluate a random sample of this many users (0: all validation users)")
    ap.add_argument("--eval-batch-size", type=int, default=0, help="users per evaluation batch (0: the config's)")
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="where synthetic_<scale>/ lives or is built")
    ap.add_argument("--override", action="append", default=[],
                    help="extra Hydra override for every worker, e.g. model.net.path=literal (repeatable)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.worker:  # progress (graph builds, faiss recall) on stderr; the row on stdout
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s][%(name)s] %(message)s")
        row = measure(args)
        print("BENCH_ROW " + json.dumps(row), flush=True)
        return [row]
    rows = []
    for scale in args.scale.split(","):
        for model in args.models.split(","):
            print(f"{time.strftime('%H:%M:%S')} {model} @ {scale} ...", file=sys.stderr, flush=True)
            rows.append(run_worker(args, model.strip(), scale.strip()))
    out = Path(args.out)
    write_csv(out / "bench.csv", rows)
    table = format_table(rows)
    (out / "bench.txt").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out / 'bench.csv'}, {out / 'bench.txt'}")
    return rows


if __name__ == "__main__":
    main()
