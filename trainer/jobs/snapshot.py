"""`python -m trainer snapshot`: copy production's app tables into a throwaway work database.

The brief's safe flow: never train against production. Dump the tables the pipeline reads from
production through a read-only connection, restore them into a work Postgres (a CI service
container, a local server), run `pipeline --target <work> --publish-target prod` there; only the
publish writes to production.

    pg_dump  --format=custom --no-owner --no-privileges --table=public.videos ...   (source)
    pg_restore --use-list=<filtered> --single-transaction --exit-on-error            (work)

Tables, data and keys are restored in one transaction that stops at the first error, then indexes
and comments on a best-effort basis; which entries travel and why is in `snapshot_tools`, with
finding and running the client tools. The source is only ever read: our own queries run in
read-only transactions and pg_dump takes nothing stronger than ACCESS SHARE locks.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql as psql
from psycopg.conninfo import conninfo_to_dict

from trainer.backends.postgres import APP_SCHEMA, connection_settings
from trainer.backends.postgres.connection import IDENTIFIER
from trainer.backends.profiles import Target
from trainer.errors import UserError
from trainer.jobs.snapshot_tools import (
    BEST_EFFORT_ENTRIES,
    LEFT_OUT_ENTRIES,
    RESTORED_ENTRIES,
    PgTools,
    _restore,
    _run,
    check_versions,
    find_tools,
    restore_errors,
    restore_lists,
)

# Re-exported: tests and benchmarks import the tool helpers from here.
__all__ = [
    "BEST_EFFORT_ENTRIES",
    "LEFT_OUT_ENTRIES",
    "READ_ONLY",
    "RESTORED_ENTRIES",
    "SNAPSHOT_TABLES",
    "snapshot_tables",
    "PgTools",
    "SnapshotResult",
    "check_versions",
    "find_tools",
    "restore_errors",
    "restore_lists",
    "snapshot",
]

# What the pipeline reads or keeps in the app schema, in dependency order.
SNAPSHOT_TABLES = (
    "videos",
    "video_embeddings_a",  # the slots, then the view over the published one
    "video_embeddings_b",
    "video_embeddings",
    "user_embeddings_a",
    "user_embeddings_b",
    "user_embeddings",
    "popular_videos",
    "reviewed_videos",
    "model_runs",
)
READ_ONLY = "-c default_transaction_read_only=on"


def snapshot_tables(environ: os._Environ | dict[str, str] = os.environ) -> tuple[str, ...]:
    """SNAPSHOT_TABLES, and last the app's likes table when APP_LIKES_TABLE names it: dbt reads
    it as training data (the app_likes_setting macro), so the work copy needs it too."""
    likes = environ.get("APP_LIKES_TABLE", "").strip()
    if not likes or likes in SNAPSHOT_TABLES:
        return SNAPSHOT_TABLES
    if not IDENTIFIER.match(likes):
        raise UserError(
            f"APP_LIKES_TABLE={likes!r} must be a plain table name in {APP_SCHEMA} "
            "(letters, digits, underscores)"
        )
    return (*SNAPSHOT_TABLES, likes)


@dataclass(frozen=True)
class SnapshotResult:
    tables: dict[str, int]  # restored table (or view) -> rows in the work database
    missing: list[str]  # snapshot tables the source does not have (yet)
    source_version: int
    work_version: int
    tools: PgTools
    dump_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # dump, restore, analyze
    skipped: list[str] = field(default_factory=list)  # pg_restore's errors on indexes, comments


def snapshot(source: Target, work: Target, progress: bool = True) -> SnapshotResult:
    """Replace the work database's copies of snapshot_tables() with the source's."""
    tables = snapshot_tables()
    if source.kind != "postgres" or work.kind != "postgres":
        raise UserError("snapshot copies between Postgres targets (--source and --target)")
    source_settings, work_settings = connection_settings(source), connection_settings(work)
    if _same_database(source_settings.conninfo, work_settings.conninfo):
        raise UserError(
            f"--source and --target are the same database ({work_settings.described}): the "
            "snapshot would drop the tables it copies"
        )
    tools = find_tools()
    with _connect(source_settings.conninfo, read_only=True) as src:
        source_major = _major(src)
        present = [t for t in tables if _exists(src, t)]
        vector_schema = _vector_schema(src)
    if "videos" not in present:
        raise UserError(
            f"the source ({source_settings.described}) has no {APP_SCHEMA}.videos table: "
            f"run `python -m trainer migrate --target {source.name}` there first"
        )
    with _connect(work_settings.conninfo) as dst:
        check_versions(tools, source_major, _major(dst))
        _prepare_work(dst, vector_schema, tables)
        work_major = _major(dst)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="two-tower-snapshot-") as tmp:
        dump = Path(tmp) / "snapshot.dump"
        _run(tools.pg_dump, _dump_args(present, dump), source_settings.conninfo, READ_ONLY)
        dump_bytes = dump.stat().st_size
        seconds["dump"] = time.perf_counter() - started
        skipped = _restore(tools, dump, work_settings.conninfo)
        seconds["restore"] = time.perf_counter() - started - seconds["dump"]
    with _connect(work_settings.conninfo) as dst:
        rows = {}
        for table in present:
            if _relkind(dst, table) == "r":
                dst.execute(f"analyze {APP_SCHEMA}.{table}")
            rows[table] = dst.execute(f"select count(*) from {APP_SCHEMA}.{table}").fetchone()[0]
    if progress:
        for table, n in rows.items():
            print(f"  {APP_SCHEMA}.{table}: {n:,} rows", flush=True)
    seconds["analyze"] = time.perf_counter() - started - seconds["dump"] - seconds["restore"]
    missing = [t for t in tables if t not in present]
    return SnapshotResult(
        rows, missing, source_major, work_major, tools, dump_bytes, seconds, skipped
    )


def _dump_args(tables: list[str], out: Path) -> list[str]:
    return [
        "--format=custom",
        # gzip level 1 (an integer works on every pg_dump version): 325 MB of tables dumped in
        # 2.5 s instead of 11.6 s at the default level, for a file 10% larger (108 MB vs 98 MB)
        "--compress=1",
        "--no-owner",
        "--no-privileges",
        *(f"--table={APP_SCHEMA}.{t}" for t in tables),
        f"--file={out}",
    ]


def _prepare_work(
    con: psycopg.Connection, vector_schema: str | None, tables: tuple[str, ...]
) -> None:
    """pgvector where the source has it (the dumped columns name its schema), and no old copies
    of the snapshot tables (dropped with what depends on them: views dbt rebuilds)."""
    with con.transaction():
        if vector_schema is not None:
            row = _vector_schema(con)
            if row is None:
                schema = psql.Identifier(vector_schema)
                con.execute(psql.SQL("create schema if not exists {}").format(schema))
                con.execute(psql.SQL("create extension vector schema {}").format(schema))
            elif row != vector_schema:
                raise UserError(
                    f"pgvector is in schema {row} in the work database but in "
                    f"{vector_schema} in the source; use a fresh work database"
                )
        for table in reversed(tables):
            kind = "view" if _relkind(con, table) == "v" else "table"
            con.execute(f"drop {kind} if exists {APP_SCHEMA}.{table} cascade")


def _connect(conninfo: str, read_only: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(
            conninfo, autocommit=True, options=READ_ONLY if read_only else None, connect_timeout=10
        )
    except psycopg.Error as exc:
        where = conninfo_to_dict(conninfo)
        raise UserError(
            f"cannot connect to {where.get('host')}/{where.get('dbname')}: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from None


def _major(con: psycopg.Connection) -> int:
    return int(con.execute("show server_version_num").fetchone()[0]) // 10000


def _exists(con: psycopg.Connection, table: str) -> bool:
    return con.execute("select to_regclass(%s) is not null", (f"{APP_SCHEMA}.{table}",)).fetchone()[
        0
    ]


def _relkind(con: psycopg.Connection, table: str) -> str | None:
    """'r' for a table, 'v' for a view (video_embeddings), None when absent."""
    row = con.execute(
        "select relkind::text from pg_class where oid = to_regclass(%s)", (f"{APP_SCHEMA}.{table}",)
    ).fetchone()
    return row[0] if row else None


def _vector_schema(con: psycopg.Connection) -> str | None:
    row = con.execute(
        "select n.nspname from pg_extension as e join pg_namespace as n "
        "on n.oid = e.extnamespace where e.extname = 'vector'"
    ).fetchone()
    return None if row is None else row[0]


def _same_database(a: str, b: str) -> bool:
    keys = ("host", "port", "dbname")
    pa_, pb = conninfo_to_dict(a), conninfo_to_dict(b)
    return all(str(pa_.get(k) or "") == str(pb.get(k) or "") for k in keys)
