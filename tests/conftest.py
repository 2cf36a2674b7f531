"""Shared fixtures and markers. Fixtures build real things: DuckDB files by the real loader and
dbt project, and (tests marked `postgres`) a real PostgreSQL with pgvector started by the suite.

Markers follow the folders, so `pytest -m "not postgres"` or `-m "not slow"` pick a subset while
`make test` still runs everything: `dbt` (tests/dbt, and anything that runs dbt build), `postgres`
(anything using the bundled server), `slow` (tests/e2e).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pg_server import dbt_scratch, pg_env  # noqa: F401 (fixtures for every test)
from tests.support.warehouses import build_duckdb
from trainer.ingest.synth import SynthConfig, write_synthetic_csv

POSTGRES_FIXTURES = {"pg_env", "dbt_scratch"}
DBT_FIXTURES = {"synth_warehouse", "dbt_scratch"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        fixtures = set(getattr(item, "fixturenames", ()))
        if "postgres" in item.name or "postgres" in parts[-1] or fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if "dbt" in parts or fixtures & DBT_FIXTURES:
            item.add_marker(pytest.mark.dbt)
        if "e2e" in parts:
            item.add_marker(pytest.mark.slow)


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
