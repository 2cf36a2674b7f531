"""One connection config: profiles.yml targets, rendered from the environment for both tools."""

from __future__ import annotations

import pytest

from trainer.backends.postgres import connection_settings
from trainer.backends.profiles import Target, load_target
from trainer.errors import UserError
from trainer.transform.dbt import dbt_env


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
    with pytest.raises(UserError, match="no target 'staging'"):
        load_target("staging")


def test_database_url_reaches_dbt_as_pg_variables(monkeypatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://u:p%40ss@db.example.com:6543/app?sslmode=require"
    )
    env = dbt_env(Target("postgres", "postgres", "recsys", {}))
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"]) == ("db.example.com", "6543", "u")
    assert (env["PGPASSWORD"], env["PGDATABASE"], env["PGSSLMODE"]) == ("p@ss", "app", "require")


def test_each_postgres_target_reads_its_own_variables(monkeypatch) -> None:
    """Training on a work copy and publishing to production never mixes their settings."""
    work_url = "postgresql://w:secret1@work.example:5432/work"
    prod_url = "postgresql://p:secret2@prod.example:5432/prod"
    monkeypatch.setenv("DATABASE_URL", work_url)
    monkeypatch.setenv("PROD_DATABASE_URL", prod_url)
    work, prod = load_target("postgres"), load_target("prod")
    assert (work.url_variable, prod.url_variable) == ("DATABASE_URL", "PROD_DATABASE_URL")
    assert connection_settings(work).conninfo == work_url
    assert connection_settings(prod).conninfo == prod_url
    assert connection_settings(prod).described == "p@prod.example:5432/prod"
    env = dbt_env(prod)
    assert (env["PROD_PGHOST"], env["PROD_PGPASSWORD"]) == ("prod.example", "secret2")
    assert env.get("PGHOST") != "prod.example"  # the work target's variables are left alone
    monkeypatch.delenv("PROD_DATABASE_URL")
    monkeypatch.setenv("PROD_PGHOST", "db.abc.supabase.co")
    assert load_target("prod").settings["host"] == "db.abc.supabase.co"
    assert load_target("prod_readonly").url_variable == "PROD_READONLY_DATABASE_URL"
