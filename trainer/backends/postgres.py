"""Production: Postgres + pgvector (Supabase), the same interface as the embedded DuckDB.

Where things live (see sql/postgres/):
  - raw.reviews, raw.load_rejects, raw.loads  the CSV load (COPY), replaced in one transaction
  - <target schema> (PGSCHEMA, default recsys)  the dbt marts; not exposed by Supabase's API
  - public.videos, video_embeddings, user_embeddings, popular_videos, reviewed_videos,
    model_runs  app tables (serving reads only these: production needs no marts); the two
    embedding tables are views, each over one of two slot tables (*_a, *_b)
  - public.recommend_videos(), public.similar_videos()  serving functions (security invoker)

Data moves in bulk both ways: COPY (CSV) for the raw load and for reads into polars, binary COPY
for the embedding write-back. A publish is one transaction under an advisory lock: register
the videos of another database's marts when given, write both embedding tables (a new version:
COPY into the slots the views do not show, on two more connections, then the ANN index and the
foreign key, then point the views at them; the same version again: stage and upsert into the
published slots), refresh reviewed_videos and popular_videos and retune the functions' probes.
A reader sees the old set or the new one, never a mix; a publish that dies midway changes
nothing a reader sees.

Every query runs in a short transaction that sets search_path (marts, then public) locally, so
unqualified names behave like DuckDB's and the code is correct behind a transaction pooler
(Supabase's port 6543), where session settings do not survive between transactions.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql as psql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import Jsonb

from trainer.backends.base import (
    DEFAULT_COLUMN_DIM,
    RawLoad,
    Recommendation,
    ServingTables,
    Warehouse,
    check_vectors,
    check_widths,
    pad_to,
)
from trainer.backends.profiles import Target
from trainer.errors import UserError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "postgres"
APP_SCHEMA = "public"
RAW_SCHEMA = "raw"  # dbt var raw_schema
EMBEDDING_TABLES = {"video_embeddings": "video_id", "user_embeddings": "user_id"}
ANN_TABLE = "video_embeddings"  # the view the serving functions search
ANN_INDEX_SUFFIX = "_embedding_ann"  # a slot's ANN index: video_embeddings_a_embedding_ann
# How long the publish waits for a lock on a table the app uses (videos, to drop a foreign key):
# beyond it the step is skipped (a slower path) rather than queueing the app's queries.
SLOT_LOCK_TIMEOUT = "2s"
# The publish's last steps (foreign key, views swapped, old slots emptied) wait at most this long
# for their locks, this many times, before the publish gives up (see _bounded).
SWAP_LOCK_TIMEOUT = "5s"
SWAP_ATTEMPTS = 3
SERVING_FUNCTIONS = ("recommend_videos(text, integer)", "similar_videos(uuid, integer)")
# pg_advisory_xact_lock keys (the dbt macro rebuild_vector_index uses the publish key too).
PUBLISH_LOCK_KEY = 4123577019
MIGRATE_LOCK_KEY = 4123577020
POOLER_PORT = 6543  # Supabase's transaction pooler (Supavisor)
MAX_INDEXED_DIM = 2000  # pgvector's ivfflat/hnsw limit for the vector type
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- ANN index rules (mirrored by dbt_project/macros/vector_index.sql) --------------------------
def ivfflat_lists(rows: int) -> int:
    """rows / 1000 up to 1M rows, sqrt(rows) above; at least 10."""
    lists = rows // 1000 if rows <= 1_000_000 else int(rows**0.5)
    return max(lists, 10)


def ivfflat_probes(lists: int) -> int:
    """recommend_videos' probes: 4 * sqrt(lists) rounded up, at least 10 and at most lists.

    pgvector suggests sqrt(lists) as a start. On trained two-tower embeddings at 107k videos
    (107 lists; benchmarks/postgres_bench.py --sweep), recall@10 of recommend_videos against
    exact search was 0.92-0.94 at 2x sqrt, 0.94-0.96 at 3x (k-means sampling moves it by about
    0.01 between builds: too close to the >= 0.95 target), 0.96-0.98 at 4x, 0.98 at 5x."""
    return _probes(4, lists)


def ivfflat_similar_probes(lists: int) -> int:
    """similar_videos' probes: 6 * sqrt(lists) rounded up, at least 10 and at most lists.

    Item-to-item queries are harder for ivfflat than user queries (a video's neighbours sit
    near the borders of its list more often): at 107 lists recall@10 of similar_videos was
    0.88-0.89 at 3x sqrt, 0.93 at 4x, 0.95-0.96 at 5x, 0.98 at 6x."""
    return _probes(6, lists)


def _probes(factor: int, lists: int) -> int:
    return min(max(math.ceil(factor * lists**0.5), 10), lists)


def ann_expression(column: str, ann_dim: int, vector_schema: str) -> str:
    """What the ANN index is on and the serving functions order by: the first ann_dim (the
    model's) dimensions of the zero-padded column. Must match sql/postgres/003's text."""
    return (
        f"{vector_schema}.subvector({column}, 1, {int(ann_dim)})"
        f"::{vector_schema}.vector({int(ann_dim)})"
    )


# -- the slots (sql/postgres/002_tables.sql) --------------------------------------------------
# Each embedding table is a view over one of two slot tables; a publish fills the other one and
# points the view at it.
def slots(table: str) -> tuple[str, str]:
    """The two tables behind the view `table`."""
    return f"{table}_a", f"{table}_b"


def other_slot(slot: str) -> str:
    table, letter = slot.rsplit("_", 1)
    return f"{table}_{'b' if letter == 'a' else 'a'}"


def active_slot_sql(table: str = ANN_TABLE) -> str:
    """A query for the slot the view `table` reads (one row when the schema is migrated)."""
    a, b = slots(table)
    return (
        "select distinct t.relname from pg_rewrite as r "
        "join pg_depend as d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid "
        "join pg_class as t on t.oid = d.refobjid and t.relkind = 'r' "
        f"where r.ev_class = to_regclass('{APP_SCHEMA}.{table}') and t.relname in ('{a}', '{b}')"
    )


# hnsw.ef_search: recall@10 on the same embeddings 0.80 at 40, 0.89 at 100, 0.95 at 200,
# 0.97 at 400 (p50 7 ms).
HNSW_EF_SEARCH = 400


def vector_index_memory_mb(rows: int, dim: int) -> int:
    """maintenance_work_mem for an index build: the vectors (and graph) twice over, 64 MB-2 GB."""
    needed = rows * (dim * 4 + 256) * 2 // 1_048_576 + 1
    return min(max(needed, 64), 2048)


# -- connection settings --------------------------------------------------------------------
@dataclass(frozen=True)
class ConnectionSettings:
    conninfo: str
    pooler: bool  # a transaction pooler: no prepared statements
    described: str  # where we connect, without the password, for messages
    env_prefix: str = ""  # of the target's variables (PROD_ for prod), for messages


def connection_settings(
    target: Target, environ: dict[str, str] | None = None
) -> ConnectionSettings:
    """The target's DSN variable when set (DATABASE_URL for `postgres`, PROD_DATABASE_URL for
    `prod`: Target.url_variable), else its host/port/user/password/dbname from profiles.yml.

    A host that is a directory is a unix socket directory. The pooler mode (no prepared
    statements) is on for port 6543 (Supabase's transaction pooler) or PG_POOLER=1.
    """
    env = os.environ if environ is None else environ
    variable = target.url_variable
    url = env.get(variable, "").strip()
    if url:
        try:
            parts = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise UserError(
                f"{variable} is not a valid Postgres connection string ({_scrub(str(exc), url)})"
            ) from None
        conninfo = url
    else:
        s = target.settings
        parts = {
            "host": str(s.get("host", "localhost")),
            "port": str(s.get("port", 5432)),
            "user": str(s.get("user", "postgres")),
            "dbname": str(s.get("dbname") or s.get("database") or "postgres"),
        }
        if s.get("password"):
            parts["password"] = str(s["password"])
        if s.get("sslmode") and not parts["host"].startswith("/"):
            parts["sslmode"] = str(s["sslmode"])
        conninfo = make_conninfo(**parts)
    port = str(parts.get("port") or "5432")
    pooler = env.get("PG_POOLER", "").strip().lower() in ("1", "true", "yes") or port == str(
        POOLER_PORT
    )
    described = (
        f"{parts.get('user') or '(default user)'}@{parts.get('host') or '(default host)'}"
        f":{port}/{parts.get('dbname') or '(default db)'}"
    )
    return ConnectionSettings(conninfo, pooler, described, target.env_prefix)


def _scrub(message: str, *secrets: str | None) -> str:
    """A driver message with passwords (and URLs' userinfo) masked."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", message)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", message, flags=re.I)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def render_migrations(
    column_dim: int,
    marts_schema: str,
    vector_schema: str = "public",
    ann_dim: int | None = None,
) -> list[tuple[str, str]]:
    """The sql/postgres migrations with their placeholders filled: [(file name, sql)].

    `ann_dim` (default: the column's) is how many leading dimensions the ANN index and the
    serving functions use: the model's dimension. Useful to hand the files to another
    migration tool (e.g. `supabase/migrations/`)."""
    ann_dim = int(column_dim) if ann_dim is None else int(ann_dim)
    if not 1 <= ann_dim <= int(column_dim):
        raise UserError(f"ann_dim must be between 1 and {column_dim}, got {ann_dim}")
    if not _IDENTIFIER.match(marts_schema):
        raise UserError(
            f"the marts schema name {marts_schema!r} must be a plain identifier "
            "(letters, digits, underscores)"
        )
    values = {
        "{dim}": str(int(column_dim)),
        "{ann_dim}": str(ann_dim),
        "{marts_schema_name}": marts_schema,
        "{marts_schema}": _quote_ident(marts_schema),
        "{vector_schema}": vector_schema,  # regnamespace text: already quoted when needed
    }
    rendered = []
    for path in sorted(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        text = path.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        rendered.append((path.name, text))
    return rendered


class PostgresWarehouse(Warehouse):
    kind = "postgres"

    def __init__(
        self,
        settings: ConnectionSettings,
        schema: str = "recsys",
        *,
        index_method: str = "ivfflat",
        connect_timeout: int = 10,
    ) -> None:
        super().__init__(schema)
        if index_method not in ("ivfflat", "hnsw"):
            raise UserError(f"VECTOR_INDEX_METHOD must be ivfflat or hnsw, got {index_method!r}")
        self.settings = settings
        self.index_method = index_method
        # Called with each step's name during publish_embeddings, inside its transaction
        # ("staged", "upserted:video_embeddings", "upserted:user_embeddings", "upserted",
        # "indexed", "swapped"): progress reporting, benchmarks, fault injection in tests.
        self.publish_observer: Callable[[str], None] | None = None
        self._connect_timeout = connect_timeout
        try:
            self.con = self._connect()
        except psycopg.Error as exc:
            password = conninfo_to_dict(settings.conninfo).get("password")
            detail = _scrub(str(exc).strip(), password, settings.conninfo).splitlines()
            raise UserError(
                f"cannot connect to Postgres at {settings.described}: "
                f"{' '.join(line.strip() for line in detail if line.strip())}. Check "
                f"{settings.env_prefix}DATABASE_URL or "
                + "/".join(
                    f"{settings.env_prefix}PG{part}"
                    for part in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")
                )
            ) from None
        self._search_path = f"{_quote_ident(schema)}, {APP_SCHEMA}"
        self._vector_schema: str | None = None
        self._register_vector()

    def _connect(self) -> psycopg.Connection:
        """A new autocommit connection (the warehouse's own, or a publish worker's)."""
        return psycopg.connect(
            self.settings.conninfo,
            autocommit=True,
            prepare_threshold=None if self.settings.pooler else 5,
            connect_timeout=self._connect_timeout,
            client_encoding="utf8",
            application_name="reviews_two_tower",
        )

    @classmethod
    def from_target(cls, target: Target) -> PostgresWarehouse:
        return cls(
            connection_settings(target),
            target.schema,
            index_method=os.environ.get("VECTOR_INDEX_METHOD", "ivfflat").strip().lower(),
        )

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        """One transaction with this warehouse's session settings made local to it."""
        with self.con.transaction(), self.con.cursor() as cur:
            cur.execute(
                "select set_config('search_path', %s, true), set_config('timezone', 'UTC', true),"
                " set_config('datestyle', 'ISO, YMD', true),"
                " set_config('extra_float_digits', '1', true)",
                (self._search_path,),
            )
            yield cur

    def _register_vector(self) -> None:
        """Let psycopg send and receive numpy arrays as pgvector values (when installed)."""
        from pgvector.psycopg.vector import register_vector_info
        from psycopg.types import TypeInfo

        row = self.con.execute(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
        ).fetchone()
        if row is None:
            return
        self._vector_schema = row[0]
        register_vector_info(self.con, TypeInfo.fetch(self.con, f"{row[0]}.vector"))

    # -- schema -------------------------------------------------------------------------------
    def ensure_app_schema(self, column_dim: int = DEFAULT_COLUMN_DIM) -> None:
        """Apply sql/postgres/*.sql in order, in one transaction (idempotent)."""
        if not 1 <= int(column_dim) <= MAX_INDEXED_DIM:
            raise UserError(
                f"embedding column dimension must be between 1 and {MAX_INDEXED_DIM} "
                f"(pgvector's index limit), got {column_dim}"
            )
        migrations = render_migrations(column_dim, self.schema)
        with self._tx() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            self._create_vector_extension(cur, migrations[0])
            cur.execute(
                "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
            )
            vector_schema = cur.fetchone()[0]
            cur.execute("set local check_function_bodies = off")
            # keep the dimensions the published model's index uses (when they still fit)
            ann_dim = self._function_ann_dim(cur)
            if ann_dim is None or ann_dim > int(column_dim):
                ann_dim = int(column_dim)
            rendered = render_migrations(column_dim, self.schema, vector_schema, ann_dim)
            for name, text in rendered[1:]:
                try:
                    cur.execute(text)
                except psycopg.Error as exc:
                    raise UserError(f"migration sql/postgres/{name} failed: {exc}") from exc
            self._vector_schema = vector_schema
            if self._index_ann_dim(cur) not in (None, ann_dim):
                # an index the functions cannot use (e.g. on the whole column, from before
                # the index was on the model's dimensions): rebuild it to match
                self._rebuild_ann_index(cur, ann_dim)
            self._tune_functions(cur)
        self._register_vector()

    def _create_vector_extension(self, cur: psycopg.Cursor, migration: tuple[str, str]) -> None:
        cur.execute(
            "select exists(select 1 from pg_extension where extname = 'vector'), "
            "exists(select 1 from pg_available_extensions where name = 'vector')"
        )
        installed, available = cur.fetchone()
        if installed:
            return
        if not available:
            raise UserError(
                f"the pgvector extension is not available on {self.settings.described}: install "
                "it on the server (Debian/Ubuntu: postgresql-NN-pgvector from apt.postgresql.org; "
                "Docker: the pgvector/pgvector image; Supabase has it built in)"
            )
        name, text = migration
        try:
            with self.con.transaction():  # a savepoint: report the error, not a dead transaction
                cur.execute(text)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserError(
                f"the pgvector extension is not installed in database "
                f"{self.settings.described} and this role cannot create it "
                f"({exc.diag.message_primary}). "
                "Ask a superuser to run `create extension vector;` (Supabase: Dashboard -> "
                "Database -> Extensions -> vector)"
            ) from None
        except psycopg.Error as exc:
            raise UserError(f"could not create the pgvector extension ({name}): {exc}") from None

    def embedding_column_dim(self, table: str) -> int:
        with self._tx() as cur:
            return self._column_dim(cur, table)

    def _column_dim(self, cur: psycopg.Cursor, table: str) -> int:
        cur.execute(
            "select format_type(a.atttypid, a.atttypmod) from pg_attribute as a "
            "where a.attrelid = to_regclass(%s) and a.attname = 'embedding' "
            "and not a.attisdropped",
            (f"{APP_SCHEMA}.{table}",),
        )
        row = cur.fetchone()
        if row is None:
            raise UserError(
                f"{APP_SCHEMA}.{table}.embedding does not exist: run "
                "`python -m trainer migrate --target postgres` first"
            )
        match = re.search(r"vector\((\d+)\)$", row[0])
        if match is None:
            raise UserError(
                f"{APP_SCHEMA}.{table}.embedding is {row[0]}, expected vector(N) with a dimension"
            )
        return int(match.group(1))

    # -- data in and out ----------------------------------------------------------------------
    def replace_raw(self, load: RawLoad) -> None:
        """COPY the parsed CSV into raw.* (truncate + copy: dbt's views on them stay valid)."""
        raw = _quote_ident(RAW_SCHEMA)
        with self._tx() as cur:
            cur.execute(
                f"create schema if not exists {raw};"
                f"create table if not exists {raw}.reviews (line_number bigint, product_url text,"
                " reviewer_id text, stars text);"
                f"create table if not exists {raw}.load_rejects (line_number bigint, reason text,"
                " raw_line text);"
                f"create table if not exists {raw}.loads (source_path text, sha256 text,"
                " data_lines bigint, parsed_rows bigint, rejected_lines bigint,"
                " loaded_at timestamptz);"
                f"truncate {raw}.reviews, {raw}.load_rejects, {raw}.loads"
            )
            _copy_arrow(cur, f"{raw}.reviews", load.reviews)
            _copy_arrow(cur, f"{raw}.load_rejects", load.rejects)
            cur.execute(
                f"insert into {raw}.loads values (%s, %s, %s, %s, %s, now())",
                (
                    load.source_path,
                    load.sha256,
                    load.data_lines,
                    load.reviews.num_rows,
                    load.rejects.num_rows,
                ),
            )
        self.con.execute(f"analyze {raw}.reviews, {raw}.load_rejects")

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> pl.DataFrame:
        """The query's result through COPY ... TO STDOUT (CSV), parsed by polars in one go."""
        query = _pyformat(sql.strip().rstrip(";"), bool(params))
        with self._tx() as cur:
            cur.execute(f"select * from ({query}) as _q limit 0", params or None)
            columns = [(d.name, d.type_code) for d in cur.description]
            buffer = io.BytesIO()
            with cur.copy(f"copy ({query}) to stdout (format csv)", params or None) as copy:
                for chunk in copy:
                    buffer.write(chunk)
        return self._frame(buffer.getvalue(), columns)

    def _frame(self, data: bytes, columns: list[tuple[str, int]]) -> pl.DataFrame:
        names = _unique_names([name for name, _ in columns])
        types = [self._type_name(oid) for _, oid in columns]
        if not data:
            return pl.DataFrame(
                schema={
                    n: _READ_DTYPES.get(t, pl.String) for n, t in zip(names, types, strict=True)
                }
            )
        frame = pl.read_csv(
            io.BytesIO(data),
            has_header=False,
            new_columns=names,
            schema_overrides={
                n: _CSV_DTYPES.get(t, pl.String) for n, t in zip(names, types, strict=True)
            },
            infer_schema=False,
        )
        conversions = [
            _convert(pl.col(n), t) for n, t in zip(names, types, strict=True) if t in _CONVERSIONS
        ]
        return frame.with_columns(conversions) if conversions else frame

    def _type_name(self, oid: int) -> str:
        info = self.con.adapters.types.get(oid)
        return info.name if info is not None else "unknown"

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self._tx() as cur:
            cur.execute(_pyformat(sql, bool(params)), params or None)

    # -- publishing ---------------------------------------------------------------------------
    def publish_embeddings(
        self,
        videos: tuple[list[str], np.ndarray],
        users: tuple[list[str], np.ndarray],
        model_version: str,
        serving: ServingTables | None = None,
    ) -> None:
        """Replace both embedding tables with one model version, atomically, and index it.

        Everything readers see changes in one transaction, which holds an advisory lock from
        start to commit (concurrent publishes queue). First the videos of `serving` (another
        database's marts) that this database lacks are registered. A new version (the weekly
        case) is COPYed (binary) into the slots that the video_embeddings and user_embeddings
        views do not show, bare, so the COPY writes rows only, by two connections at once
        (_fill_slots); the ANN index and the foreign key to videos are built after, in bulk.
        Readers keep seeing the old slots until the commit. Re-publishing a version that is
        already there goes through staging tables and a compare-and-upsert on the published
        slots instead, so unchanged rows are not rewritten and the call is a no-op. Then
        reviewed_videos and popular_videos are refreshed (from `serving`, else from this
        database's marts). Last, the views are pointed at the new slots and the old slots
        emptied; or, on a re-publish, the ANN index is rebuilt and swapped.

        Steps reported to `publish_observer`: "staged" (inputs checked, lock held; on the
        re-publish path, staging tables filled), "upserted:<table>" (a new version: both slots
        filled), "upserted" (serving tables refreshed too), "indexed" (the new ANN index built),
        "swapped" (a new version: foreign key added, views pointed at the new slots).
        """
        if not model_version:
            raise UserError("model_version must not be empty")
        if self._vector_schema is None:
            self._register_vector()
            if self._vector_schema is None:
                raise UserError(
                    "pgvector is not installed in this database: run "
                    "`python -m trainer migrate --target postgres` first"
                )
        batches = {
            "video_embeddings": _checked(*videos, "video_embeddings", uuid_keys=True),
            "user_embeddings": _checked(*users, "user_embeddings", uuid_keys=False),
        }
        check_widths(batches["video_embeddings"][1], batches["user_embeddings"][1])
        model_dim = max(matrix.shape[1] for _, matrix in batches.values())
        try:
            with self._tx() as cur:
                cur.execute("select pg_advisory_xact_lock(%s), now()", (PUBLISH_LOCK_KEY,))
                stamp = cur.fetchone()[1]
                if serving is not None:
                    self._register_videos(cur, serving.videos)
                dims = {}
                for table, (_, matrix) in batches.items():
                    dims[table] = self._column_dim(cur, table)
                    pad_to(matrix[:0], dims[table], table)  # a wider model: a clear error
                if self._is_republish(cur, model_version):
                    self._republish(cur, batches, dims, model_version)
                    self._refresh_serving(cur, serving, model_version, self._active_slot(cur))
                    self._notify("upserted")
                    self._rebuild_ann_index(cur, model_dim)
                    self._notify("indexed")
                    self._notify("swapped")
                else:
                    self._notify("staged")
                    filled = self._fill_slots(cur, batches, dims, model_version, stamp)
                    for table in filled:
                        self._notify(f"upserted:{table}")
                    self._refresh_serving(cur, serving, model_version, filled[ANN_TABLE])
                    self._notify("upserted")
                    self._swap_in(cur, filled, model_dim)
        except psycopg.errors.ForeignKeyViolation as exc:
            # The foreign key video_embeddings_*.video_id -> videos.id refused the vectors: say
            # which and how many (the transaction is gone; ask again in a fresh one).
            self._raise_unregistered(batches["video_embeddings"][0])
            raise UserError(
                f"publishing {model_version} failed and was rolled back: {str(exc).strip()}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise UserError(
                f"publishing {model_version} failed ({str(exc).strip()}); the transaction was "
                "rolled back, the previous embeddings and index are unchanged"
            ) from exc
        except psycopg.Error as exc:
            raise UserError(
                f"publishing {model_version} failed and was rolled back (the previous embeddings "
                f"and index are unchanged): {str(exc).strip()}"
            ) from exc

    def _notify(self, step: str) -> None:
        if self.publish_observer is not None:
            self.publish_observer(step)

    def _is_republish(self, cur: psycopg.Cursor, model_version: str) -> bool:
        """Whether this version is already published: the first row (by key, through the
        published slot's primary key) of either view has it.

        Every publish leaves one version in both tables, so one row tells. Were that ever not
        so, both paths still end with the same rows; only updated_at of rows that already had
        this exact vector and version would move."""
        first_rows = " or ".join(
            f"coalesce((select t.model_version = %(v)s from {APP_SCHEMA}.{table} as t "
            f"order by t.{key} limit 1), false)"
            for table, key in EMBEDDING_TABLES.items()
        )
        cur.execute(f"select {first_rows}", {"v": model_version})
        return bool(cur.fetchone()[0])

    # -- the slots ----------------------------------------------------------------------------
    def _active_slot(self, cur: psycopg.Cursor, table: str = ANN_TABLE) -> str:
        """The slot table that the view `table` reads."""
        cur.execute(active_slot_sql(table))
        rows = cur.fetchall()
        if len(rows) != 1:
            raise UserError(
                f"{APP_SCHEMA}.{table} is not a view over one of {', '.join(slots(table))}: "
                "run `python -m trainer migrate --target postgres` first"
            )
        return rows[0][0]

    def _foreign_key(self, cur: psycopg.Cursor, slot: str) -> str | None:
        cur.execute(
            "select conname from pg_constraint where conrelid = to_regclass(%s) and contype = 'f'",
            (f"{APP_SCHEMA}.{slot}",),
        )
        row = cur.fetchone()
        return row[0] if row else None

    def _fill_slots(
        self,
        cur: psycopg.Cursor,
        batches: dict[str, tuple[list[str] | np.ndarray, np.ndarray]],
        dims: dict[str, int],
        model_version: str,
        stamp: Any,
    ) -> dict[str, str]:
        """Fill the slot each view does not show with the new vectors, both at once, each on
        a connection of its own; returns {view: filled slot}.

        The fills commit on their own, before the publish's transaction points the views at
        them: no reader sees a slot before that (the views show the others), and no other
        publish touches them (this one holds the advisory lock throughout). If the publish
        fails later, the views stay where they were and the next publish refills the slots.
        Two connections keep two server cores busy: weekly medians of 143k and 172k vectors/s
        against 86-135k on one (sql/postgres/README.md)."""
        filled = {table: other_slot(self._active_slot(cur, table)) for table in batches}
        with ThreadPoolExecutor(len(batches), thread_name_prefix="fill-slot") as pool:
            jobs = [
                pool.submit(
                    self._fill_slot,
                    filled[table],
                    table,
                    *batches[table],
                    dims[table],
                    model_version,
                    stamp,
                )
                for table in batches
            ]
            for job in jobs:
                job.result()
        return filled

    def _fill_slot(
        self,
        slot: str,
        table: str,
        ids: list[str] | np.ndarray,
        matrix: np.ndarray,
        dim: int,
        model_version: str,
        stamp: Any,
    ) -> None:
        """COPY one table's new vectors into `slot`, bare, then build its primary key and
        statistics.

        The slot is emptied and stripped of its index, keys and foreign key first (it holds
        nothing anyone reads), so the COPY writes rows only, each vector once; the primary key
        is then built in one sort, the foreign key later by _swap_in."""
        key = EMBEDDING_TABLES[table]
        target = f"{APP_SCHEMA}.{slot}"
        with self._connect() as con:
            self._drop_foreign_key(con, slot)
            with con.transaction(), con.cursor() as cur:
                cur.execute(
                    f"truncate {target};"
                    f"drop index if exists {APP_SCHEMA}.{slot}{ANN_INDEX_SUFFIX};"
                    f"alter table {target} drop constraint if exists {slot}_pkey"
                )
                suffix = (model_version.encode(), _timestamptz_bytes(stamp))
                blocks = binary_copy_blocks(ids, matrix, key == "video_id", suffix, dim=dim)
                columns = f"{key}, embedding, model_version, updated_at"
                # freeze: the rows are loaded frozen and their pages all-visible (the truncate
                # above, in the same transaction, allows it), so neither the first readers (hint
                # bits) nor autovacuum rewrite them, nor does autovacuum hold the slot when the
                # next publish empties it
                with cur.copy(
                    f"copy {target} ({columns}) from stdin (format binary, freeze)"
                ) as copy:
                    for block in blocks:
                        copy.write(block)
                cur.execute(f"alter table {target} add constraint {slot}_pkey primary key ({key})")
                cur.execute(f"analyze {target}")  # statistics before the views point at it

    def _drop_foreign_key(self, con: psycopg.Connection, slot: str) -> None:
        """Drop the slot's foreign key to videos, if it has one, in a transaction of its own.

        Dropping a foreign key takes an exclusive lock on the referenced table, videos, which
        the app reads all the time: held for milliseconds here, not for the whole COPY. The
        wait for it is bounded (SLOT_LOCK_TIMEOUT): when a long query holds videos, the key
        stays and the COPY checks it row by row (slower, same result)."""
        with con.transaction(), con.cursor() as cur:
            name = self._foreign_key(cur, slot)
            if name is None:
                return
            cur.execute("select set_config('lock_timeout', %s, true)", (SLOT_LOCK_TIMEOUT,))
            try:
                with con.transaction():  # a savepoint: a timeout leaves the key, not an error
                    cur.execute(
                        f"alter table {APP_SCHEMA}.{slot} drop constraint {_quote_ident(name)}"
                    )
            except psycopg.errors.LockNotAvailable:
                return

    def _swap_in(self, cur: psycopg.Cursor, filled: dict[str, str], model_dim: int) -> None:
        """Index the filled video slot and give it its foreign key, then point each view at its
        filled slot and empty the old ones.

        The foreign key comes after the ANN index build: its lock on videos (writers wait,
        readers do not) lasts from there to the commit. Replacing the views and emptying the
        old slots take exclusive locks that the views' readers wait on for those same last
        milliseconds; each of those waits is bounded (_bounded)."""
        video_slot = filled[ANN_TABLE]
        ann_dim = self._serving_ann_dim(cur, model_dim)
        self._create_ann_index(cur, video_slot, f"{video_slot}{ANN_INDEX_SUFFIX}", ann_dim)
        self._notify("indexed")

        def swap() -> None:
            if self._foreign_key(cur, video_slot) is None:
                cur.execute(
                    f"alter table {APP_SCHEMA}.{video_slot} add constraint "
                    f"{video_slot}_video_id_fkey foreign key (video_id) "
                    f"references {APP_SCHEMA}.videos (id) on delete cascade"
                )
            for table, slot in filled.items():
                cur.execute(
                    f"create or replace view {APP_SCHEMA}.{table} with (security_invoker = true) "
                    f"as select {EMBEDDING_TABLES[table]}, embedding, model_version, updated_at "
                    f"from {APP_SCHEMA}.{slot}"
                )
                old = other_slot(slot)
                cur.execute(
                    f"truncate {APP_SCHEMA}.{old};"
                    f"drop index if exists {APP_SCHEMA}.{old}{ANN_INDEX_SUFFIX}"
                )

        relations = [f"{APP_SCHEMA}.{name}" for name in ("videos", *filled)]
        relations += [f"{APP_SCHEMA}.{other_slot(slot)}" for slot in filled.values()]
        self._bounded(cur, "point the views at the new slots", relations, swap)
        self._tune_functions(cur)
        self._notify("swapped")

    def _bounded(
        self, cur: psycopg.Cursor, step: str, relations: list[str], action: Callable[[], None]
    ) -> None:
        """Run `action` (statements that take locks on what the app reads or writes) in a
        savepoint with lock_timeout SWAP_LOCK_TIMEOUT, up to SWAP_ATTEMPTS times.

        A lock request that waits queues every later request behind it: a long transaction on
        a view (an open analyst session) would stall the app's reads for as long as it lasts.
        Bounded, the app waits at most SWAP_LOCK_TIMEOUT; the savepoint keeps the publish's
        work for the next attempt, and after the last one the publish fails, naming the
        sessions that held the locks, and rolls back (the previous version stays published)."""
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                with self.con.transaction():
                    cur.execute("select set_config('lock_timeout', %s, true)", (SWAP_LOCK_TIMEOUT,))
                    action()
                    cur.execute("select set_config('lock_timeout', '0', true)")
                return
            except psycopg.errors.LockNotAvailable:
                if attempt == SWAP_ATTEMPTS:
                    raise UserError(
                        f"publishing: could not {step} within {SWAP_ATTEMPTS} tries of "
                        f"{SWAP_LOCK_TIMEOUT} ({self._lock_holders(cur, relations)}); the "
                        "previous embeddings stay published: publish again once that is over"
                    ) from None
                time.sleep(attempt)

    def _lock_holders(self, cur: psycopg.Cursor, relations: list[str]) -> str:
        """Who holds locks on `relations`: pid, transaction age and state of each session."""
        cur.execute(
            "select a.pid, date_trunc('second', now() - a.xact_start), a.state, "
            "left(a.query, 60) from pg_stat_activity as a "
            "where a.pid <> pg_backend_pid() and a.pid in (select l.pid from pg_locks as l "
            "where l.granted and l.relation in (select to_regclass(r) from unnest(%s::text[]) "
            "as r)) order by a.xact_start",
            (relations,),
        )
        holders = [
            f"pid {pid}, {state}, transaction open {age}: {query!r}"
            for pid, age, state, query in cur.fetchall()
        ]
        return "held by " + "; ".join(holders) if holders else "other sessions held them"

    def _republish(
        self,
        cur: psycopg.Cursor,
        batches: dict[str, tuple[list[str] | np.ndarray, np.ndarray]],
        dims: dict[str, int],
        model_version: str,
    ) -> None:
        """The same version again: stage, then change only rows that differ, in the slots the
        views show."""
        for table, (ids, matrix) in batches.items():
            self._stage(cur, table, ids, matrix, dims[table])
        self._notify("staged")
        self._check_videos_registered(cur)
        for table, key in EMBEDDING_TABLES.items():
            self._upsert(cur, table, self._active_slot(cur, table), key, model_version)
            self._notify(f"upserted:{table}")

    def _stage(
        self,
        cur: psycopg.Cursor,
        table: str,
        ids: list[str] | np.ndarray,
        matrix: np.ndarray,
        dim: int,
    ) -> None:
        """Binary COPY into a temporary table (dropped at commit); uuid keys for videos."""
        stage = f"_stage_{table}"
        key_type = "uuid" if EMBEDDING_TABLES[table] == "video_id" else "text"
        cur.execute(
            f"create temporary table {stage} (key {key_type} not null, "
            f"embedding {self._vector_schema}.vector({dim}) not null) on commit drop"
        )
        with cur.copy(
            f"copy {stage} (key, embedding) from stdin (format binary)",
            writer=QueuedLibpqWriter(cur),
        ) as copy:
            for block in binary_copy_blocks(ids, matrix, key_type == "uuid", dim=dim):
                copy.write(block)
        cur.execute(f"analyze {stage}")  # row counts for the planner's joins below

    def _check_videos_registered(self, cur: psycopg.Cursor) -> None:
        cur.execute(
            "select count(*), min(s.key::text) from _stage_video_embeddings as s "
            f"where not exists (select 1 from {APP_SCHEMA}.videos as v where v.id = s.key)"
        )
        self._unregistered_error(*cur.fetchone())

    def _raise_unregistered(self, keys: list[str] | np.ndarray) -> None:
        """After a foreign key violation: count the model's video ids missing from videos."""
        ids = [uuid.UUID(bytes=bytes(k)) for k in keys]
        with self._tx() as cur:
            cur.execute(
                "select count(*), min(k::text) from unnest(%s::uuid[]) as k "
                f"where not exists (select 1 from {APP_SCHEMA}.videos as v where v.id = k)",
                (ids,),
            )
            self._unregistered_error(*cur.fetchone())

    @staticmethod
    def _unregistered_error(missing: int, example: str | None) -> None:
        if missing:
            raise UserError(
                f"{missing} video ids of the model are not in {APP_SCHEMA}.videos "
                f"(e.g. {example}); "
                "run `dbt build` with ingest_videos on, or register them, then publish again "
                "(publishing from a restored copy: the app may have registered one of these "
                "products under another id since the snapshot; snapshot again)"
            )

    def _upsert(
        self, cur: psycopg.Cursor, table: str, into: str, key: str, model_version: str
    ) -> None:
        """Make `into` equal to `table`'s staged set, set-based: delete rows not in it, update
        rows whose vector or version differ (unchanged rows are not rewritten), insert new
        ones."""
        target, stage = f"{APP_SCHEMA}.{into}", f"_stage_{table}"
        cur.execute(
            f"delete from {target} as t "
            f"where not exists (select 1 from {stage} as s where s.key = t.{key})"
        )
        cur.execute(
            f"update {target} as t set embedding = s.embedding, model_version = %(v)s, "
            f"updated_at = now() from {stage} as s where t.{key} = s.key "
            "and (t.embedding, t.model_version) is distinct from (s.embedding, %(v)s)",
            {"v": model_version},
        )
        cur.execute(
            f"insert into {target} ({key}, embedding, model_version, updated_at) "
            f"select s.key, s.embedding, %(v)s, now() from {stage} as s "
            f"on conflict ({key}) do nothing",  # rows already there were updated above
            {"v": model_version},
        )

    def _register_videos(self, cur: psycopg.Cursor, videos: pa.Table) -> None:
        """Insert the videos this database lacks, with the ids they have where the model was
        trained (deterministic for ingested ones), before any vector refers to them. An app row
        with the same product_url and another id wins (`on conflict do nothing`); the vectors of
        such a video are then reported by _check_videos_registered."""
        cur.execute(
            "create temporary table _stage_videos (id uuid not null, product_url text not null) "
            "on commit drop"
        )
        _copy_arrow(cur, "_stage_videos", videos.select(["id", "product_url"]))
        cur.execute(
            f"insert into {APP_SCHEMA}.videos (id, product_url) "
            "select s.id, s.product_url from _stage_videos as s "
            # no `where not exists (... videos ...)`: its plan can scan the rows this very
            # insert adds (quadratic when videos was analyzed empty); the conflict check probes
            # the keys instead
            "order by s.id on conflict do nothing"
        )

    def _refresh_serving(
        self, cur: psycopg.Cursor, serving: ServingTables | None, model_version: str, slot: str
    ) -> None:
        """reviewed_videos and popular_videos for the new vectors (in video `slot`), from
        `serving` or from this database's marts; left as they are when there is neither (a
        rollback on production).

        reviewed_videos changes by difference: each reviewer's sorted set is aggregated, then
        reviewers no longer present are deleted and only changed sets are written."""
        source = self._stage_serving(cur, serving)
        if source is None:
            return
        target = f"{APP_SCHEMA}.reviewed_videos"
        cur.execute(
            "create temporary table _stage_reviewed_sets on commit drop as "
            "select s.user_id, array_agg(distinct s.video_id order by s.video_id) as video_ids "
            f"from {source} as s where s.video_id is not null group by s.user_id"
        )
        cur.execute("analyze _stage_reviewed_sets")
        cur.execute(
            f"delete from {target} as t where not exists "
            "(select 1 from _stage_reviewed_sets as s where s.user_id = t.user_id)"
        )
        cur.execute(
            f"insert into {target} as t (user_id, video_ids) "
            "select s.user_id, s.video_ids from _stage_reviewed_sets as s "
            "on conflict (user_id) do update set video_ids = excluded.video_ids "
            "where t.video_ids is distinct from excluded.video_ids"
        )
        self._rank_popular(cur, model_version, slot)

    def _stage_serving(self, cur: psycopg.Cursor, serving: ServingTables | None) -> str | None:
        """Temporary _stage_positives, and the relation that holds the reviewed pairs: the
        marts' interactions, or _stage_reviewed copied from `serving`. None without a source."""
        if serving is None:
            cur.execute("select to_regclass('interactions') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute(
                "create temporary table _stage_positives on commit drop as "
                "select video_id, count(*) as positives from interactions "
                "where label and video_id is not null group by video_id"
            )
            cur.execute("analyze _stage_positives")
            return "interactions"
        cur.execute(
            "create temporary table _stage_reviewed (user_id text not null, "
            "video_id uuid not null) on commit drop;"
            "create temporary table _stage_positives (video_id uuid not null, "
            "positives bigint not null) on commit drop"
        )
        _copy_arrow(cur, "_stage_reviewed", serving.reviewed.select(["user_id", "video_id"]))
        _copy_arrow(cur, "_stage_positives", serving.positives.select(["video_id", "positives"]))
        cur.execute("analyze _stage_reviewed, _stage_positives")
        return "_stage_reviewed"

    def _rank_popular(self, cur: psycopg.Cursor, model_version: str, slot: str) -> None:
        """public.popular_videos: the staged positives per video (_stage_serving), kept for
        published videos; written set-based like the re-publish upsert: delete videos no longer
        in, update changed rows in place (their video_id, so the foreign key to videos, does not
        change: no check per row; with the table's fillfactor 50 most are HOT updates, no index
        entries), insert new ones."""
        target = f"{APP_SCHEMA}.popular_videos"
        cur.execute(
            "create temporary table _ranked on commit drop as "
            "select c.video_id, c.positives from _stage_positives as c "
            f"where exists (select 1 from {APP_SCHEMA}.{slot} as e "
            "  where e.video_id = c.video_id)"
        )
        cur.execute("analyze _ranked")
        cur.execute(
            f"delete from {target} as p "
            "where not exists (select 1 from _ranked as r where r.video_id = p.video_id)"
        )
        cur.execute(
            f"update {target} as p set positives = r.positives, model_version = %(v)s "
            "from _ranked as r where r.video_id = p.video_id "
            "and (p.positives, p.model_version) is distinct from (r.positives, %(v)s)",
            {"v": model_version},
        )
        cur.execute(
            f"insert into {target} (video_id, positives, model_version) "
            "select r.video_id, r.positives, %(v)s from _ranked as r "
            "on conflict (video_id) do nothing",  # rows already there were updated above
            {"v": model_version},
        )

    def _rebuild_ann_index(self, cur: psycopg.Cursor, model_dim: int) -> None:
        """Rebuild the published slot's ANN index: build the new one under a temporary name,
        drop the old one, rename, in one transaction (a re-publish, or a migration that changes
        the indexed dimensions; a new version gets its index in _swap_in).

        The old index serves readers until the swap; only drop+rename+commit take the slot's
        exclusive lock, for milliseconds."""
        slot = self._active_slot(cur)
        ann_dim = self._serving_ann_dim(cur, model_dim)
        name = f"{slot}{ANN_INDEX_SUFFIX}"
        self._create_ann_index(cur, slot, f"{name}_new", ann_dim)

        def swap() -> None:
            cur.execute(f"drop index if exists {APP_SCHEMA}.{name}")
            cur.execute(f"alter index {APP_SCHEMA}.{name}_new rename to {name}")

        self._bounded(cur, "swap the ANN index", [f"{APP_SCHEMA}.{slot}"], swap)
        self._tune_functions(cur)
        cur.execute(f"analyze {APP_SCHEMA}.{slot}")

    def _serving_ann_dim(self, cur: psycopg.Cursor, model_dim: int) -> int:
        """How many leading dimensions the ANN index gets: the model's (the rest is zero
        padding). When the serving functions search another number, they are re-created with
        the model's in this transaction (by their owner; anyone else keeps theirs when it
        covers the model, and the index follows them)."""
        current = self._function_ann_dim(cur)
        if current == model_dim:
            return model_dim
        dim = self._column_dim(cur, ANN_TABLE)
        if self._owns_functions(cur):
            cur.execute("set local check_function_bodies = off")
            functions = dict(render_migrations(dim, self.schema, self._vector_schema, model_dim))[
                "003_functions.sql"
            ]
            cur.execute(functions)
            return model_dim
        if current is not None and model_dim <= current <= dim:
            return current
        return model_dim

    def _create_ann_index(self, cur: psycopg.Cursor, slot: str, name: str, ann_dim: int) -> None:
        """An ivfflat (lists from the row count) or hnsw index on a slot's first ann_dim
        dimensions, with enough maintenance_work_mem to build it in memory."""
        table = f"{APP_SCHEMA}.{slot}"
        cur.execute(f"select count(*) from {table}")
        rows = cur.fetchone()[0]
        dim = self._column_dim(cur, slot)
        cur.execute(
            "select set_config('maintenance_work_mem', %s, true)",
            (f"{vector_index_memory_mb(rows, dim)}MB",),
        )
        if self.index_method == "ivfflat":
            options = f"with (lists = {ivfflat_lists(rows)})"
        else:
            options = "with (m = 16, ef_construction = 64)"  # pgvector's defaults
        cur.execute(f"drop index if exists {APP_SCHEMA}.{name}")
        expression = ann_expression("embedding", ann_dim, self._vector_schema)
        cur.execute(
            f"create index {name} on {table} using {self.index_method} "
            f"(({expression}) {self._vector_schema}.vector_cosine_ops) {options}"
        )

    def ann_index(self, cur: psycopg.Cursor | None = None) -> str:
        """The name of the published slot's ANN index (whether or not it exists)."""
        if cur is None:
            with self._tx() as own:
                return self.ann_index(own)
        return f"{self._active_slot(cur)}{ANN_INDEX_SUFFIX}"

    def _tune_functions(self, cur: psycopg.Cursor) -> None:
        """Set the serving functions' search settings for the current ANN index: ivfflat.probes
        from its lists (more for similar_videos), or hnsw.ef_search."""
        cur.execute(
            "select am.amname from pg_class as c join pg_am as am on am.oid = c.relam "
            "where c.oid = to_regclass(%s)",
            (f"{APP_SCHEMA}.{self.ann_index(cur)}",),
        )
        row = cur.fetchone()
        if row is None:
            return
        recommend, similar = SERVING_FUNCTIONS
        if row[0] == "ivfflat":
            lists = self.ann_index_lists(cur) or 100
            settings = {
                recommend: f"ivfflat.probes = {ivfflat_probes(lists)}",
                similar: f"ivfflat.probes = {ivfflat_similar_probes(lists)}",
            }
        else:
            settings = dict.fromkeys(SERVING_FUNCTIONS, f"hnsw.ef_search = {HNSW_EF_SEARCH}")
        if not self._owns_functions(cur):
            return  # not the functions' owner: they keep the migration's settings
        for function, setting in settings.items():
            cur.execute(f"alter function {APP_SCHEMA}.{function} set {setting}")

    def _owns_functions(self, cur: psycopg.Cursor) -> bool:
        cur.execute(
            "select bool_and(pg_has_role(current_user, p.proowner, 'USAGE')) from pg_proc as p "
            "where p.oid = any(%s::regprocedure[])",
            ([f"{APP_SCHEMA}.{f}" for f in SERVING_FUNCTIONS],),
        )
        return bool(cur.fetchone()[0])

    def _function_ann_dim(self, cur: psycopg.Cursor) -> int | None:
        """The dimensions recommend_videos searches (None: no function, or an older one)."""
        cur.execute(
            r"select substring(p.prosrc from 'subvector\(e\.embedding, 1, (\d+)\)') "
            "from pg_proc as p where p.oid = to_regprocedure(%s)",
            (f"{APP_SCHEMA}.{SERVING_FUNCTIONS[0]}",),
        )
        row = cur.fetchone()
        return int(row[0]) if row and row[0] else None

    def _index_ann_dim(self, cur: psycopg.Cursor) -> int | None:
        """The dimensions the ANN index is on (None: no index; 0: not a subvector index)."""
        cur.execute(
            "select pg_get_indexdef(to_regclass(%s))", (f"{APP_SCHEMA}.{self.ann_index(cur)}",)
        )
        row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        match = re.search(r"subvector\(embedding, 1, (\d+)\)", row[0])
        return int(match.group(1)) if match else 0

    def ann_index_lists(self, cur: psycopg.Cursor | None = None) -> int | None:
        """The lists of the current ivfflat index (None when there is none, or it is hnsw)."""
        query = (
            "select am.amname, c.reloptions from pg_class as c "
            "join pg_am as am on am.oid = c.relam where c.oid = to_regclass(%s)"
        )
        if cur is None:
            with self._tx() as own:
                return self.ann_index_lists(own)
        cur.execute(query, (f"{APP_SCHEMA}.{self.ann_index(cur)}",))
        row = cur.fetchone()
        if row is None or row[0] != "ivfflat":
            return None
        options = dict(option.split("=", 1) for option in row[1] or [])
        return int(options.get("lists", 100))

    def record_run(self, run: dict[str, Any]) -> None:
        """Insert or update one model_runs row (dict/list values are stored as jsonb)."""
        if "model_version" not in run:
            raise ValueError("record_run needs run['model_version']")
        columns = list(run)
        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in run.values()]
        updates = [
            psql.SQL("{} = excluded.{}").format(psql.Identifier(c), psql.Identifier(c))
            for c in columns
            if c != "model_version"
        ]
        statement = psql.SQL("insert into {} ({}) values ({}) on conflict (model_version) ").format(
            psql.Identifier(APP_SCHEMA, "model_runs"),
            psql.SQL(", ").join(map(psql.Identifier, columns)),
            psql.SQL(", ").join(psql.Placeholder() * len(columns)),
        )
        if updates:
            statement += psql.SQL("do update set {}").format(psql.SQL(", ").join(updates))
        else:
            statement += psql.SQL("do nothing")
        with self._tx() as cur:
            cur.execute(statement, values)

    # -- serving ------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int) -> list[Recommendation]:
        if k < 1:
            raise UserError("k must be at least 1")
        with self._tx() as cur:
            cur.execute(
                f"select exists(select 1 from {APP_SCHEMA}.user_embeddings where user_id = %s), "
                f"exists(select 1 from {APP_SCHEMA}.reviewed_videos where user_id = %s)",
                (user_id, user_id),
            )
            has_vector, has_reviews = cur.fetchone()
            if not has_vector and not has_reviews:
                raise UserError(f"unknown user id {user_id!r}: no embedding and no reviews")
            cur.execute(
                f"select video_id::text, product_url, score "
                f"from {APP_SCHEMA}.recommend_videos(%s, %s)",
                (user_id, k),
            )
            return [Recommendation(r[0], r[1], float(r[2])) for r in cur.fetchall()]

    def similar(self, video_id: str, k: int) -> list[Recommendation]:
        if k < 1:
            raise UserError("k must be at least 1")
        try:
            key = uuid.UUID(str(video_id))
        except ValueError:
            raise UserError(f"video id must be a uuid, got {video_id!r}") from None
        with self._tx() as cur:
            cur.execute(
                f"select video_id::text, product_url, score "
                f"from {APP_SCHEMA}.similar_videos(%s, %s)",
                (key, k),
            )
            return [Recommendation(r[0], r[1], float(r[2])) for r in cur.fetchall()]

    def close(self) -> None:
        self.con.close()


# -- bulk encoding ------------------------------------------------------------------------------
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def binary_copy_blocks(
    ids: list[str] | np.ndarray,
    matrix: np.ndarray,
    uuid_keys: bool = False,
    suffix: tuple[bytes, ...] = (),
    chunk_rows: int = 16_384,
    dim: int | None = None,
) -> Iterator[bytes]:
    """COPY BINARY rows (key, embedding vector, *suffix), built by numpy rather than row by row.

    Each block is one fixed-size numpy record array of at most `chunk_rows` rows: int16 field
    count, int32 key size, the key (16 bytes for a uuid; text keys are grouped by byte length),
    int32 vector size, then pgvector's binary vector (int16 dim, int16 unused, dim big-endian
    float4), then each `suffix` value (already in binary form: the same for every row).
    Vectors narrower than `dim` (the column's dimension) are zero-padded on the way.
    """
    width = matrix.shape[1]
    dim = width if dim is None else dim
    if width > dim:
        raise ValueError(f"vectors of {width} dimensions do not fit vector({dim})")
    yield _COPY_HEADER
    if uuid_keys or isinstance(ids, np.ndarray):
        keys = ids if isinstance(ids, np.ndarray) else uuid_bytes(list(ids))
        groups = [(16, np.arange(len(keys)), keys)]
    else:
        encoded = [key.encode() for key in ids]
        lengths = np.fromiter((len(k) for k in encoded), dtype=np.int64, count=len(encoded))
        groups = []
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            texts = np.array([encoded[i] for i in rows], f"S{length}") if length else None
            groups.append((int(length), rows, texts))
    constants = [
        field
        for i, value in enumerate(suffix)
        for field in ((f"size{i}", ">i4"), *([(f"value{i}", f"S{len(value)}")] if value else []))
    ]
    for length, rows, keys in groups:
        key_field = [("key", f"S{length}")] if length else []
        record = np.dtype(
            [("fields", ">i2"), ("key_size", ">i4"), *key_field]
            + [("vector_size", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))]
            + constants
        )
        for start in range(0, len(rows), chunk_rows):
            part = slice(start, start + chunk_rows)
            block = np.empty(len(rows[part]), dtype=record)
            block["fields"] = 2 + len(suffix)
            block["key_size"] = length
            if length:
                block["key"] = keys[part]
            block["vector_size"] = 4 + 4 * dim
            block["dim"] = dim
            block["unused"] = 0
            block["values"][:, :width] = matrix[rows[part]]
            block["values"][:, width:] = 0
            for i, value in enumerate(suffix):
                block[f"size{i}"] = len(value)
                if value:
                    block[f"value{i}"] = value
            yield block.tobytes()
    yield _COPY_TRAILER


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _timestamptz_bytes(stamp: datetime) -> bytes:
    """A timestamptz in COPY's binary form: int64 microseconds since 2000-01-01 UTC."""
    return ((stamp - _PG_EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)


def _checked(
    ids: list[str], matrix: np.ndarray, table: str, uuid_keys: bool
) -> tuple[list[str] | np.ndarray, np.ndarray]:
    """Validated (keys, float32 matrix); uuid keys come back as 16-byte values (numpy S16)."""
    ids = [str(i) for i in ids]
    matrix = check_vectors(ids, matrix, table)  # shape, finite, distinct ids (shared rules)
    if not uuid_keys:
        if any("\x00" in i for i in ids):
            raise UserError(
                f"{table}: an id contains a NUL character; Postgres text cannot hold it"
            )
        return ids, matrix
    keys = uuid_bytes(ids, table)
    if len(np.unique(keys)) != len(ids):  # one uuid spelt two ways (case, braces)
        raise UserError(f"{table}: duplicate ids in the model's vectors; nothing published")
    return keys, matrix


def uuid_bytes(ids: list[str], table: str = "video_embeddings") -> np.ndarray:
    """The 16 bytes of each uuid (numpy S16), vectorized for the canonical 8-4-4-4-12 form."""
    n = len(ids)
    try:
        text = "".join(ids).encode("ascii")
        if len(text) == 36 * n:
            chars = np.frombuffer(text, dtype="S1").reshape(n, 36)
            hyphens = np.array([8, 13, 18, 23])
            if n == 0 or (chars[:, hyphens] == b"-").all():
                digits = np.delete(chars, hyphens, axis=1)
                return np.frombuffer(bytes.fromhex(digits.tobytes().decode()), dtype="S16")
    except (UnicodeEncodeError, ValueError):
        pass
    out = []
    for i in ids:  # other spellings, or a bad id to name
        try:
            out.append(uuid.UUID(i).bytes)
        except ValueError:
            raise UserError(f"{table}: video id {i!r} is not a uuid") from None
    return np.frombuffer(b"".join(out), dtype="S16")


def _copy_arrow(cur: psycopg.Cursor, table: str, data: pa.Table, batch_rows: int = 200_000) -> None:
    """COPY an arrow table as CSV written by arrow's C++ writer (every non-null value quoted, so
    '' stays an empty string and only nulls are empty fields)."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    columns = ", ".join(_quote_ident(name) for name in data.column_names)
    with cur.copy(f"copy {table} ({columns}) from stdin (format csv)") as copy:
        for batch in data.to_batches(max_chunksize=batch_rows):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
            copy.write(sink.getvalue().to_pybytes())


def _pyformat(sql: str, has_params: bool) -> str:
    """DuckDB-style `?` placeholders -> psycopg's `%s` (and literal `%` -> `%%`), outside quotes
    and comments. Without parameters the text goes to the server unchanged."""
    if not has_params:
        return sql
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


# Postgres type name -> the dtype polars parses the CSV field as.
_CSV_DTYPES: dict[str, Any] = {
    "int2": pl.Int16,
    "int4": pl.Int32,
    "int8": pl.Int64,
    "oid": pl.Int64,
}
# Types parsed as text and converted afterwards (vectorized).
_CONVERSIONS = {"bool", "numeric", "date", "timestamp", "timestamptz", "vector", "float4", "float8"}
_READ_DTYPES: dict[str, Any] = {
    **_CSV_DTYPES,
    "float4": pl.Float32,
    "float8": pl.Float64,
    "bool": pl.Boolean,
    "numeric": pl.Float64,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "timestamptz": pl.Datetime("us", "UTC"),
    "vector": pl.List(pl.Float32),
}


def _convert(col: pl.Expr, type_name: str) -> pl.Expr:
    if type_name == "bool":
        return col.replace_strict({"t": True, "f": False}, default=None, return_dtype=pl.Boolean)
    if type_name == "numeric":
        return col.cast(pl.Float64)
    if type_name == "date":
        return col.str.to_date("%Y-%m-%d")
    if type_name == "timestamp":
        return col.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
    if type_name == "timestamptz":  # read with timezone UTC: "... +00"
        return (
            col.str.replace(r"\+00$", "")
            .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
            .dt.replace_time_zone("UTC")
        )
    if type_name == "vector":
        return col.str.strip_chars("[]").str.split(",").cast(pl.List(pl.Float32))
    # float4/float8: Postgres spells the specials NaN, Infinity, -Infinity
    return col.str.replace("Infinity", "inf", literal=True).cast(
        pl.Float32 if type_name == "float4" else pl.Float64
    )


__all__ = [
    "ConnectionSettings",
    "ann_expression",
    "PostgresWarehouse",
    "binary_copy_blocks",
    "connection_settings",
    "ivfflat_lists",
    "ivfflat_probes",
    "ivfflat_similar_probes",
    "render_migrations",
    "vector_index_memory_mb",
]
