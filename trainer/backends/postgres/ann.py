"""The ANN index: its build on a slot, and the serving functions' search settings.

The sizing rules (lists, probes, ef_search, build memory), the indexed dimensions and the active
slot are SQL functions of sql/postgres/003_functions.sql, their one home: this module and the
rebuild_vector_index dbt macro both ask the database. The index is on the first ann_dim (the
model's) dimensions of the zero-padded column, and the serving functions order by exactly that
expression (ann_expression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from trainer.backends.postgres.layout import (
    ANN_INDEX_SUFFIX,
    ANN_TABLE,
    APP_SCHEMA,
    SERVING_FUNCTIONS,
)
from trainer.backends.postgres.migrations import column_dim, render_migrations
from trainer.backends.postgres.slots import active_slot, bounded

MAX_INDEXED_DIM = 2000  # pgvector's ivfflat/hnsw limit for the vector type
IndexMethod = Literal["ivfflat", "hnsw"]
# ann_ivfflat_probes' factor per serving function: similar_videos' item-to-item queries need more.
PROBE_FACTORS = {"recommend_videos": 4, "similar_videos": 6, "recommend_for_likes": 4}


@dataclass(frozen=True)
class IndexSettings:
    """What an index build needs to know beyond the database: read at each call, since a
    warehouse's index method may be changed and its vector schema is found by a migration."""

    method: IndexMethod
    marts_schema: str  # the serving functions are rendered with it
    vector_schema: str | None  # where pgvector is installed


# -- the rules, asked of the database (sql/postgres/003_functions.sql) -------------------------
Sql = psycopg.Cursor | psycopg.Connection  # either runs a statement


def _rule(cur: Sql, function: str, *args: int) -> int:
    placeholders = ", ".join(["%s"] * len(args))
    return int(cur.execute(f"select {APP_SCHEMA}.{function}({placeholders})", args).fetchone()[0])


def ivfflat_lists(cur: Sql, rows: int) -> int:
    return _rule(cur, "ann_ivfflat_lists", rows)


def ivfflat_probes(cur: Sql, lists: int, function: str = "recommend_videos") -> int:
    return _rule(cur, "ann_ivfflat_probes", lists, PROBE_FACTORS[function])


def hnsw_ef_search(cur: Sql) -> int:
    return _rule(cur, "ann_hnsw_ef_search")


def vector_index_memory_mb(cur: Sql, rows: int, dim: int) -> int:
    return _rule(cur, "ann_index_memory_mb", rows, dim)


def ann_expression(column: str, ann_dim: int, vector_schema: str) -> str:
    """What the ANN index is on and the serving functions order by: the first ann_dim (the
    model's) dimensions of the zero-padded column. Must match sql/postgres/003's text."""
    return (
        f"{vector_schema}.subvector({column}, 1, {int(ann_dim)})"
        f"::{vector_schema}.vector({int(ann_dim)})"
    )


# -- the index on the slots ---------------------------------------------------------------------
def ann_index(cur: psycopg.Cursor) -> str:
    """The name of the published slot's ANN index (whether or not it exists)."""
    return f"{active_slot(cur)}{ANN_INDEX_SUFFIX}"


def ann_index_lists(cur: psycopg.Cursor) -> int | None:
    """The lists of the current ivfflat index (None when there is none, or it is hnsw)."""
    cur.execute(
        "select am.amname, c.reloptions from pg_class as c "
        "join pg_am as am on am.oid = c.relam where c.oid = to_regclass(%s)",
        (f"{APP_SCHEMA}.{ann_index(cur)}",),
    )
    row = cur.fetchone()
    if row is None or row[0] != "ivfflat":
        return None
    options = dict(option.split("=", 1) for option in row[1] or [])
    return int(options.get("lists", 100))


def index_slot(cur: psycopg.Cursor, slot: str, model_dim: int, index: IndexSettings) -> None:
    """Build the ANN index of a freshly filled slot (a new version, before it is swapped in)."""
    ann_dim = serving_ann_dim(cur, model_dim, index)
    create_ann_index(cur, slot, f"{slot}{ANN_INDEX_SUFFIX}", ann_dim, index)


def rebuild_ann_index(cur: psycopg.Cursor, model_dim: int, index: IndexSettings) -> None:
    """Rebuild the published slot's ANN index: build the new one under a temporary name,
    drop the old one, rename, in one transaction (a re-publish, or a migration that changes
    the indexed dimensions; a new version gets its index in index_slot).

    The old index serves readers until the swap; only drop+rename+commit take the slot's
    exclusive lock, for milliseconds."""
    slot = active_slot(cur)
    ann_dim = serving_ann_dim(cur, model_dim, index)
    name = f"{slot}{ANN_INDEX_SUFFIX}"
    create_ann_index(cur, slot, f"{name}_new", ann_dim, index)

    def swap() -> None:
        cur.execute(f"drop index if exists {APP_SCHEMA}.{name}")
        cur.execute(f"alter index {APP_SCHEMA}.{name}_new rename to {name}")

    bounded(cur, "swap the ANN index", [f"{APP_SCHEMA}.{slot}"], swap)
    tune_functions(cur)
    cur.execute(f"analyze {APP_SCHEMA}.{slot}")


def serving_ann_dim(cur: psycopg.Cursor, model_dim: int, index: IndexSettings) -> int:
    """How many leading dimensions the ANN index gets: the model's (the rest is zero
    padding). When the serving functions search another number, they are re-created with
    the model's in this transaction (by their owner; anyone else keeps theirs when it
    covers the model, and the index follows them)."""
    current = function_ann_dim(cur)
    if current == model_dim:
        return model_dim
    dim = column_dim(cur, ANN_TABLE)
    if _owns_functions(cur):
        cur.execute("set local check_function_bodies = off")
        rendered = render_migrations(dim, index.marts_schema, index.vector_schema, model_dim)
        cur.execute(dict(rendered)["003_functions.sql"])
        return model_dim
    if current is not None and model_dim <= current <= dim:
        return current
    return model_dim


def create_ann_index(
    cur: psycopg.Cursor, slot: str, name: str, ann_dim: int, index: IndexSettings
) -> None:
    """An ivfflat (lists from the row count) or hnsw index on a slot's first ann_dim
    dimensions, with enough maintenance_work_mem to build it in memory."""
    table = f"{APP_SCHEMA}.{slot}"
    cur.execute(f"select count(*) from {table}")
    rows = cur.fetchone()[0]
    dim = column_dim(cur, slot)
    cur.execute(
        "select set_config('maintenance_work_mem', %s, true)",
        (f"{vector_index_memory_mb(cur, rows, dim)}MB",),
    )
    if index.method == "ivfflat":
        options = f"with (lists = {ivfflat_lists(cur, rows)})"
    else:
        options = "with (m = 16, ef_construction = 64)"  # pgvector's defaults
    cur.execute(f"drop index if exists {APP_SCHEMA}.{name}")
    expression = ann_expression("embedding", ann_dim, index.vector_schema)
    cur.execute(
        f"create index {name} on {table} using {index.method} "
        f"(({expression}) {index.vector_schema}.vector_cosine_ops) {options}"
    )


# -- the serving functions' search settings -----------------------------------------------------
def tune_functions(cur: psycopg.Cursor) -> None:
    """Set the serving functions' search settings for the current ANN index: ivfflat.probes
    from its lists (more for similar_videos), or hnsw.ef_search."""
    cur.execute(
        "select am.amname from pg_class as c join pg_am as am on am.oid = c.relam "
        "where c.oid = to_regclass(%s)",
        (f"{APP_SCHEMA}.{ann_index(cur)}",),
    )
    row = cur.fetchone()
    if row is None:
        return
    if row[0] == "ivfflat":
        lists = ann_index_lists(cur) or 100
        settings = {  # a visitor's likes make a user query: recommend_videos' probes
            f: f"ivfflat.probes = {ivfflat_probes(cur, lists, f.split('(')[0])}"
            for f in SERVING_FUNCTIONS
        }
    else:
        settings = dict.fromkeys(SERVING_FUNCTIONS, f"hnsw.ef_search = {hnsw_ef_search(cur)}")
    if not _owns_functions(cur):
        return  # not the functions' owner: they keep the migration's settings
    for function, setting in settings.items():
        cur.execute(f"alter function {APP_SCHEMA}.{function} set {setting}")


def _owns_functions(cur: psycopg.Cursor) -> bool:
    cur.execute(
        "select bool_and(pg_has_role(current_user, p.proowner, 'USAGE')) from pg_proc as p "
        "where p.oid = any(%s::regprocedure[])",
        ([f"{APP_SCHEMA}.{f}" for f in SERVING_FUNCTIONS],),
    )
    return bool(cur.fetchone()[0])


def function_ann_dim(cur: psycopg.Cursor) -> int | None:
    """The dimensions the serving functions search (None: not migrated, or by a version that
    predates ann_dim())."""
    cur.execute(f"select to_regprocedure('{APP_SCHEMA}.ann_dim()') is not null")
    if not cur.fetchone()[0]:
        return None
    return _rule(cur, "ann_dim")


def index_on(cur: psycopg.Cursor, ann_dim: int, vector_schema: str) -> bool | None:
    """Whether the published slot's ANN index is on ann_expression(ann_dim) (None: no index)."""
    cur.execute("select pg_get_indexdef(to_regclass(%s))", (f"{APP_SCHEMA}.{ann_index(cur)}",))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return f"subvector(embedding, 1, {int(ann_dim)})" in row[0]
