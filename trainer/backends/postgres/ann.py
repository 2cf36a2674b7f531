"""The ANN index: its rules, its build on a slot, and the serving functions' search settings.

The rules are mirrored by dbt_project/macros/vector_index.sql. The index is on the first
ann_dim (the model's) dimensions of the zero-padded column, and the serving functions order by
exactly that expression (ann_expression).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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
# hnsw.ef_search: recall@10 on the same embeddings 0.80 at 40, 0.89 at 100, 0.95 at 200,
# 0.97 at 400 (p50 7 ms).
HNSW_EF_SEARCH = 400


@dataclass(frozen=True)
class IndexSettings:
    """What an index build needs to know beyond the database: read at each call, since a
    warehouse's index method may be changed and its vector schema is found by a migration."""

    method: str  # ivfflat or hnsw
    marts_schema: str  # the serving functions are rendered with it
    vector_schema: str | None  # where pgvector is installed


# -- ANN index rules (mirrored by dbt_project/macros/vector_index.sql) --------------------------
def ivfflat_lists(rows: int) -> int:
    """rows / 1000 up to 1M rows, sqrt(rows) above; at least 10."""
    lists = rows // 1000 if rows <= 1_000_000 else int(rows**0.5)
    return max(lists, 10)


# On trained two-tower embeddings at 107k videos (107 lists; benchmarks/postgres_bench.py
# --sweep), recall@10 of recommend_videos against exact search was 0.92-0.94 at 2x sqrt,
# 0.94-0.96 at 3x (k-means sampling moves it by about 0.01 between builds), 0.96-0.98 at 4x,
# 0.98 at 5x.
def ivfflat_probes(lists: int) -> int:
    """recommend_videos' probes: 4 * sqrt(lists) rounded up, at least 10 and at most lists.

    pgvector suggests sqrt(lists) as a start; 4x is the least that keeps recall@10 against
    exact search above the 0.95 target with a margin over the variation between k-means builds
    (sql/postgres/README.md)."""
    return _probes(4, lists)


# At 107 lists recall@10 of similar_videos was 0.88-0.89 at 3x sqrt, 0.93 at 4x, 0.95-0.96 at
# 5x, 0.98 at 6x.
def ivfflat_similar_probes(lists: int) -> int:
    """similar_videos' probes: 6 * sqrt(lists) rounded up, at least 10 and at most lists.

    Item-to-item queries are harder for ivfflat than user queries (a video's neighbours sit
    near the borders of its list more often): they need more probes for the same recall."""
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


def vector_index_memory_mb(rows: int, dim: int) -> int:
    """maintenance_work_mem for an index build: the vectors (and graph) twice over, 64 MB-2 GB."""
    needed = rows * (dim * 4 + 256) * 2 // 1_048_576 + 1
    return min(max(needed, 64), 2048)


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
        (f"{vector_index_memory_mb(rows, dim)}MB",),
    )
    if index.method == "ivfflat":
        options = f"with (lists = {ivfflat_lists(rows)})"
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
    recommend, similar, likes = SERVING_FUNCTIONS
    if row[0] == "ivfflat":
        lists = ann_index_lists(cur) or 100
        settings = {  # a visitor's likes make a user query: recommend_videos' probes
            recommend: f"ivfflat.probes = {ivfflat_probes(lists)}",
            similar: f"ivfflat.probes = {ivfflat_similar_probes(lists)}",
            likes: f"ivfflat.probes = {ivfflat_probes(lists)}",
        }
    else:
        settings = dict.fromkeys(SERVING_FUNCTIONS, f"hnsw.ef_search = {HNSW_EF_SEARCH}")
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
    """The dimensions recommend_videos searches (None: no function, or an older one)."""
    cur.execute(
        r"select substring(p.prosrc from 'subvector\(e\.embedding, 1, (\d+)\)') "
        "from pg_proc as p where p.oid = to_regprocedure(%s)",
        (f"{APP_SCHEMA}.{SERVING_FUNCTIONS[0]}",),
    )
    row = cur.fetchone()
    return int(row[0]) if row and row[0] else None


def index_ann_dim(cur: psycopg.Cursor) -> int | None:
    """The dimensions the ANN index is on (None: no index; 0: not a subvector index)."""
    cur.execute("select pg_get_indexdef(to_regclass(%s))", (f"{APP_SCHEMA}.{ann_index(cur)}",))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    match = re.search(r"subvector\(embedding, 1, (\d+)\)", row[0])
    return int(match.group(1)) if match else 0
