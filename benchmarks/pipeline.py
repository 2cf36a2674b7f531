"""Timings and peak memory of the embedded pipeline at scale (default 1M synthetic reviews).

    python -m benchmarks.pipeline --reviews 1000000 [--epochs 2] [--workdir /tmp/bench]

Prints one table: synth, load, dbt build, training seconds per epoch, evaluation, write-back
(files and DuckDB tables), each with throughput, plus peak resident memory of the trainer process
and of the dbt subprocess.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from trainer.config import OutputPaths, TrainConfig
from trainer.dbt import run_dbt
from trainer.load import load_reviews
from trainer.profiles import Target
from trainer.report import table
from trainer.runner import train_run
from trainer.synth import SynthConfig, write_synthetic_csv
from trainer.warehouse.duckdb import DuckDBWarehouse


def peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def run(reviews: int, epochs: int, workdir: Path) -> list[list[object]]:
    csv, db = workdir / "reviews.csv", workdir / "warehouse.duckdb"
    db.unlink(missing_ok=True)
    rows: list[list[object]] = []

    started = time.perf_counter()
    counts = write_synthetic_csv(csv, SynthConfig(reviews=reviews, seed=0))
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

    cfg = TrainConfig(epochs=epochs, patience=epochs)
    out = OutputPaths(
        workdir / "two_tower_latest.safetensors",
        workdir / "video_embeddings.parquet",
        workdir / "user_embeddings.parquet",
    )
    with DuckDBWarehouse(db) as warehouse:
        summary = train_run(warehouse, cfg, out, publish=True, progress=False)
    t = summary.timings
    vectors = summary.n_users + summary.n_videos
    rows.append(["read marts into polars", t["read_seconds"], ""])
    per_epoch = t["train_seconds"] / len(summary.epochs)
    pure = sum(e["seconds"] for e in summary.epochs) / len(summary.epochs)
    rows.append(["train, per epoch (with valid eval)", per_epoch, f"{pure:.1f}s of it training"])
    rows.append(["final evaluation (3 models)", t["evaluate_seconds"], ""])
    rows.append(["write model + parquet", t["write_files_seconds"], ""])
    rows.append(["publish to DuckDB tables", t["publish_seconds"],
                 f"{vectors / t['publish_seconds']:,.0f} vectors/s"])  # fmt: skip
    rows.append(["peak RSS trainer process (MiB)", peak_mib(resource.RUSAGE_SELF), ""])
    rows.append(["peak RSS dbt subprocess (MiB)", peak_mib(resource.RUSAGE_CHILDREN), ""])
    print(f"{reviews:,} reviews -> {summary.n_users:,} users, {summary.n_videos:,} videos; "
          f"recall@10 {summary.metrics['two_tower']['recall@10']:.4f} after {len(summary.epochs)} "
          f"epochs (popularity {summary.metrics['popularity']['recall@10']:.4f})")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = run(args.reviews, args.epochs, workdir)
    print(table(["step", "seconds", "throughput"], rows))


if __name__ == "__main__":
    main()
