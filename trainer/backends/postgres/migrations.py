"""Migrating the app schema: sql/postgres/*.sql rendered and applied under the migrate lock.

The migrations run in order, in one transaction, and are idempotent. The first one creates the
vector extension; it runs on its own first, so that a missing extension or a role that cannot
create it gets a clear message rather than a dead transaction.
"""

from __future__ import annotations

import re

import psycopg

from trainer.backends.base import MAX_K
from trainer.backends.postgres.connection import IDENTIFIER, quote_ident
from trainer.backends.postgres.layout import APP_SCHEMA, SQL_DIR
from trainer.errors import UserError

# pg_advisory_xact_lock key: concurrent migrations queue.
MIGRATE_LOCK_KEY = 4123577020


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
    if not IDENTIFIER.match(marts_schema):
        raise UserError(
            f"the marts schema name {marts_schema!r} must be a plain identifier "
            "(letters, digits, underscores)"
        )
    values = {
        "{dim}": str(int(column_dim)),
        "{ann_dim}": str(ann_dim),
        "{max_k}": str(MAX_K),
        "{marts_schema_name}": marts_schema,
        "{marts_schema}": quote_ident(marts_schema),
        "{vector_schema}": vector_schema,  # regnamespace text: already quoted when needed
    }
    rendered = []
    for path in sorted(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql")):
        text = path.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        rendered.append((path.name, text))
    return rendered


def lock_and_create_extension(
    cur: psycopg.Cursor, migration: tuple[str, str], described: str
) -> str:
    """Take the migrate lock (held to the commit), create the vector extension when missing
    (`migration`: the rendered first file) and return the schema it is in. Function bodies are
    not checked for the rest of the transaction (they refer to what later files create)."""
    cur.execute("select pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
    _create_vector_extension(cur, migration, described)
    cur.execute(
        "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
    )
    vector_schema = cur.fetchone()[0]
    cur.execute("set local check_function_bodies = off")
    return vector_schema


def _create_vector_extension(
    cur: psycopg.Cursor, migration: tuple[str, str], described: str
) -> None:
    cur.execute(
        "select exists(select 1 from pg_extension where extname = 'vector'), "
        "exists(select 1 from pg_available_extensions where name = 'vector')"
    )
    installed, available = cur.fetchone()
    if installed:
        return
    if not available:
        raise UserError(
            f"the pgvector extension is not available on {described}: install "
            "it on the server (Debian/Ubuntu: postgresql-NN-pgvector from apt.postgresql.org; "
            "Docker: the pgvector/pgvector image; Supabase has it built in)"
        )
    name, text = migration
    try:
        with cur.connection.transaction():  # a savepoint: report the error, not a dead transaction
            cur.execute(text)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise UserError(
            f"the pgvector extension is not installed in database "
            f"{described} and this role cannot create it "
            f"({exc.diag.message_primary}). "
            "Ask a superuser to run `create extension vector;` (Supabase: Dashboard -> "
            "Database -> Extensions -> vector)"
        ) from None
    except psycopg.Error as exc:
        raise UserError(f"could not create the pgvector extension ({name}): {exc}") from None


def apply_migrations(cur: psycopg.Cursor, rendered: list[tuple[str, str]]) -> None:
    """Run rendered migration files in order; a failure names its file."""
    for name, text in rendered:
        try:
            cur.execute(text)
        except psycopg.Error as exc:
            raise UserError(f"migration sql/postgres/{name} failed: {exc}") from exc


def column_dim(cur: psycopg.Cursor, table: str) -> int:
    """The dimension `table`.embedding is declared with (vector(N))."""
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
