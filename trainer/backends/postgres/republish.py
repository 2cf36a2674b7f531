"""Publishing the same version again: stage it, then change only the rows that differ.

The published slots are updated in place, set-based, so unchanged rows are not rewritten and
re-publishing an unchanged version is a no-op for readers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import psycopg
from psycopg.copy import QueuedLibpqWriter

from trainer.backends.postgres.layout import APP_SCHEMA, EMBEDDING_TABLES
from trainer.backends.postgres.slots import Batches, active_slot
from trainer.backends.postgres.videos import check_videos_registered
from trainer.backends.postgres.wire import binary_copy_blocks


def is_republish(cur: psycopg.Cursor, model_version: str) -> bool:
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


def republish(
    cur: psycopg.Cursor,
    batches: Batches,
    dims: dict[str, int],
    model_version: str,
    vector_schema: str,
    notify: Callable[[str], None],
) -> None:
    """The same version again: stage, then change only rows that differ, in the slots the
    views show."""
    for table, (ids, matrix) in batches.items():
        _stage(cur, table, ids, matrix, dims[table], vector_schema)
    notify("staged")
    check_videos_registered(cur)
    for table, key in EMBEDDING_TABLES.items():
        _upsert(cur, table, active_slot(cur, table), key, model_version)
        notify(f"upserted:{table}")


def _stage(
    cur: psycopg.Cursor,
    table: str,
    ids: list[str] | np.ndarray,
    matrix: np.ndarray,
    dim: int,
    vector_schema: str,
) -> None:
    """Binary COPY into a temporary table (dropped at commit); uuid keys for videos."""
    stage = f"_stage_{table}"
    key_type = "uuid" if EMBEDDING_TABLES[table] == "video_id" else "text"
    cur.execute(
        f"create temporary table {stage} (key {key_type} not null, "
        f"embedding {vector_schema}.vector({dim}) not null) on commit drop"
    )
    with cur.copy(
        f"copy {stage} (key, embedding) from stdin (format binary)",
        writer=QueuedLibpqWriter(cur),
    ) as copy:
        for block in binary_copy_blocks(ids, matrix, key_type == "uuid", dim=dim):
            copy.write(block)
    cur.execute(f"analyze {stage}")  # row counts for the planner's joins below


def _upsert(cur: psycopg.Cursor, table: str, into: str, key: str, model_version: str) -> None:
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
