"""Real DuckDB warehouses for tests, built by the real loader and the real dbt project."""

from __future__ import annotations

from pathlib import Path

from tests.support.pg_server import PgServer
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse
from trainer.backends.profiles import Target, load_target
from trainer.ingest.load import load_reviews
from trainer.transform.dbt import run_dbt


def duckdb_target(path: Path) -> Target:
    return Target(name="duckdb", kind="duckdb", schema="main", settings={"path": str(path)})


def build_duckdb(csv: Path, db: Path, variables: dict | None = None) -> Target:
    """Load `csv` into a fresh DuckDB file at `db` and run `dbt build` on it."""
    target = duckdb_target(db)
    with DuckDBWarehouse(db) as warehouse:
        load_reviews(warehouse, csv)
    run_dbt(target, "build", variables=variables, quiet=True)
    return target


def build_postgres(pg_env: PgServer, csv: Path, database: str) -> Target:
    """Load `csv` into a fresh database `database` (made the profile's) and run `dbt build`."""
    pg_env.database(database)
    target = load_target("postgres")
    with PostgresWarehouse.from_target(target) as warehouse:
        warehouse.ensure_app_schema()
        load_reviews(warehouse, csv)
    run_dbt(target, "build", quiet=True)
    return target


def output_flags(out: Path) -> list[str]:
    """`pipeline`'s store and output files, all inside `out`."""
    return [
        "--store-root", str(out / "store"),
        "--out-model", str(out / "two_tower_latest.safetensors"),
        "--out-video-emb", str(out / "v.parquet"),
        "--out-user-emb", str(out / "u.parquet"),
    ]  # fmt: skip
