"""Shared fixtures: real DuckDB files built by the real loader and the real dbt project."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.dbt import run_dbt
from trainer.load import load_reviews
from trainer.profiles import Target
from trainer.synth import SynthConfig, write_synthetic_csv
from trainer.warehouse.duckdb import DuckDBWarehouse


def duckdb_target(path: Path) -> Target:
    return Target(name="duckdb", kind="duckdb", schema="main", settings={"path": str(path)})


def build_duckdb(csv: Path, db: Path, variables: dict | None = None) -> Target:
    """Load `csv` into a fresh DuckDB file at `db` and run `dbt build` on it."""
    target = duckdb_target(db)
    with DuckDBWarehouse(db) as warehouse:
        load_reviews(warehouse, csv)
    run_dbt(target, "build", variables=variables, quiet=True)
    return target


def output_flags(out: Path) -> list[str]:
    """`pipeline`'s store and output files, all inside `out`."""
    return [
        "--store-root", str(out / "store"),
        "--out-model", str(out / "two_tower_latest.safetensors"),
        "--out-video-emb", str(out / "v.parquet"),
        "--out-user-emb", str(out / "u.parquet"),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def synth_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=8_000, seed=3))
    return path


@pytest.fixture(scope="session")
def synth_warehouse(synth_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with the synthetic CSV loaded and every dbt model built and tested."""
    db = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    build_duckdb(synth_csv, db)
    return db
