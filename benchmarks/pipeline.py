"""Timings and peak memory of the embedded pipeline at scale (default 1M synthetic reviews).

    python -m benchmarks.pipeline --reviews 1000000 [--shape longtail --shape dense]
    python -m benchmarks.pipeline --reviews 10000000 --shape longtail --epochs 1   # memory

`--epochs N` caps the selection epochs (and so the refit): a run for the peak-memory figure at
sizes where the full default would take long, since one epoch holds as much as twenty.

For each shape (both by default), one table: synth, load, dbt build, and `train_run` as
`python -m trainer train` runs it with the default config (read the marts, selection epochs on
the tune slice, refit, final evaluation, write model files and DuckDB tables), seconds per epoch,
and implicit's ALS fit on the same train split beside it (when installed) with the ratio; plus
peak resident memory of the trainer process and of the dbt subprocess. Each shape runs in its own
process so the peaks are its own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.profiles import Target
from trainer.ingest.load import load_reviews
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.jobs.text_tables import table
from trainer.jobs.training import train_run
from trainer.ml.config import OutputPaths, TrainConfig
from trainer.ml.data import read_dataset
from trainer.report import report_after_run
from trainer.transform.dbt import run_dbt


def peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def als_seconds(workdir: Path) -> float | None:
    """implicit's ALS (64 factors, 15 iterations, the quality benchmark's grid centre) on the
    same train split, fit time only; None when implicit is not installed."""
    try:
        from benchmarks.peers import fit_implicit
    except ImportError:
        return None
    with DuckDBWarehouse(workdir / "warehouse.duckdb", read_only=True) as warehouse:
        data = read_dataset(warehouse, with_negatives=False)
    try:
        params = {"regularization": 0.1, "alpha": 10.0, "iterations": 15}
        return fit_implicit(data, "als", 64, 0, **params).train_seconds
    except ImportError:
        return None


def run(reviews: int, shape: str, workdir: Path, epochs: int | None = None) -> list[list[object]]:
    csv, db = workdir / "reviews.csv", workdir / "warehouse.duckdb"
    db.unlink(missing_ok=True)
    rows: list[list[object]] = []

    started = time.perf_counter()
    counts = write_synthetic_csv(csv, SynthConfig(reviews=reviews, seed=0, shape=shape))
    seconds = time.perf_counter() - started
    rows.append(["synth csv", seconds, f"{counts['lines'] / seconds:,.0f} lines/s"])

    started = time.perf_counter()
    with DuckDBWarehouse(db) as warehouse:
        loaded = load_reviews(warehouse, csv)
    seconds = time.perf_counter() - started
    rows.append(
        ["load (parse + raw tables)", seconds, f"{loaded.data_lines / seconds:,.0f} lines/s"]
    )

    target = Target("duckdb", "duckdb", "main", {"path": str(db)})
    started = time.perf_counter()
    run_dbt(target, "build", quiet=True)
    seconds = time.perf_counter() - started
    rows.append(
        ["dbt build (models + tests)", seconds, f"{loaded.data_lines / seconds:,.0f} lines/s"]
    )

    cfg = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    out = OutputPaths(
        workdir / "two_tower_latest.safetensors",
        workdir / "video_embeddings.parquet",
        workdir / "user_embeddings.parquet",
    )
    started = time.perf_counter()
    with DuckDBWarehouse(db) as warehouse:
        summary = train_run(warehouse, cfg, out, publish=True, progress=False)
        drawn = time.perf_counter()
        report_after_run(warehouse, warehouse, workdir, summary.version)  # as `train` does
        report = time.perf_counter() - drawn
    command = time.perf_counter() - started
    t = summary.timings
    vectors = summary.n_users + summary.n_videos
    epochs = summary.epochs
    rows.append(["read marts into polars", t["read_seconds"], ""])
    pure = sum(e["seconds"] for e in epochs) / len(epochs)
    rows.append([f"train: {len(epochs)} selection epochs + refit", t["train_seconds"],
                 f"{pure:.2f}s per epoch (without the tune check)"])  # fmt: skip
    rows.append(["final evaluation (3 models)", t["evaluate_seconds"], ""])
    rows.append(["write model + parquet", t["write_files_seconds"], ""])
    rows.append(["publish to DuckDB tables", t["publish_seconds"],
                 f"{vectors / t['publish_seconds']:,.0f} vectors/s"])  # fmt: skip
    rows.append(["run report (HTML, plots)", report, ""])
    rows.append(["whole train command (read .. report)", command, ""])
    als = als_seconds(workdir)
    if als is not None:
        rows.append(["implicit ALS fit, same train split", als,
                     f"train command = {command / als:.1f}x ALS, training = "
                     f"{t['train_seconds'] / als:.1f}x"])  # fmt: skip
    rows.append(["peak RSS trainer process (MiB)", peak_mib(resource.RUSAGE_SELF), ""])
    rows.append(["peak RSS dbt subprocess (MiB)", peak_mib(resource.RUSAGE_CHILDREN), ""])
    print(f"{shape}: {reviews:,} reviews -> {summary.n_users:,} users, {summary.n_videos:,} "
          f"videos; valid recall@10 {summary.metrics['two_tower']['recall@10']:.4f} "
          f"(popularity {summary.metrics['popularity']['recall@10']:.4f})")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--shape", action="append", choices=["longtail", "dense"], default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="cap (a memory run)")
    args = parser.parse_args()
    shapes = args.shape or ["longtail", "dense"]
    if len(shapes) > 1:  # one process per shape: peak memory is per shape
        for shape in shapes:
            argv = [sys.executable, "-m", "benchmarks.pipeline", "--reviews", str(args.reviews)]
            argv += ["--epochs", str(args.epochs)] if args.epochs is not None else []
            subprocess.run([*argv, "--shape", shape], check=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = run(args.reviews, shapes[0], workdir, args.epochs)
    print(table(["step", "seconds", "throughput"], rows), flush=True)


if __name__ == "__main__":
    main()
