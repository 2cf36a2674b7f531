"""One connection config: profiles.yml targets, rendered from the environment for both tools."""

from __future__ import annotations

import pytest

from trainer.dbt import dbt_env
from trainer.errors import UserError
from trainer.profiles import Target, load_target


def test_default_target_is_duckdb_at_duckdb_path(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("TWO_TOWER_TARGET", raising=False)
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    target = load_target()
    assert (target.kind, target.duckdb_path) == ("duckdb", tmp_path / "w.duckdb")


def test_postgres_target_comes_from_pg_variables(monkeypatch) -> None:
    monkeypatch.setenv("PGHOST", "/tmp/sockets")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGSCHEMA", "analytics")
    target = load_target("postgres")
    assert target.settings["host"] == "/tmp/sockets" and target.settings["port"] == "6543"
    assert target.schema == "analytics"


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="no target 'prod'"):
        load_target("prod")


def test_database_url_reaches_dbt_as_pg_variables(monkeypatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://u:p%40ss@db.example.com:6543/app?sslmode=require"
    )
    env = dbt_env(Target("postgres", "postgres", "recsys", {}))
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == ("db.example.com", "6543", "u")
    assert (env["PGPASSWORD"], env["PGDATABASE"], env["PGSSLMODE"]) == ("p@ss", "app", "require")
