"""The slot protocol of a new version: fill the slots the views do not show, then swap them in.

Each embedding table is a view over one of two slot tables (sql/postgres/002_tables.sql); a
publish fills the other one and points the view at it. A reader sees the old set or the new
one, never a mix; a publish that dies midway changes nothing a reader sees. The waits for the
locks of the last steps are bounded (bounded), so a long reader cannot stall the app behind the
publish.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg

from trainer.backends.postgres.connection import quote_ident
from trainer.backends.postgres.layout import (
    ANN_INDEX_SUFFIX,
    ANN_TABLE,
    APP_SCHEMA,
    EMBEDDING_TABLES,
)
from trainer.backends.postgres.wire import binary_copy_blocks, timestamptz_bytes
from trainer.errors import UserError

# How long the publish waits for a lock on a table the app uses (videos, to drop a foreign key):
# beyond it the step is skipped (a slower path) rather than queueing the app's queries.
SLOT_LOCK_TIMEOUT = "2s"
# The publish's last steps (foreign key, views swapped, old slots emptied) wait at most this long
# for their locks, this many times, before the publish gives up (see bounded).
SWAP_LOCK_TIMEOUT = "5s"
SWAP_ATTEMPTS = 3

Batches = dict[str, tuple[list[str] | np.ndarray, np.ndarray]]


def slots(table: str) -> tuple[str, str]:
    """The two tables behind the view `table`."""
    return f"{table}_a", f"{table}_b"


def other_slot(slot: str) -> str:
    table, letter = slot.rsplit("_", 1)
    return f"{table}_{'b' if letter == 'a' else 'a'}"


def active_slot(cur: psycopg.Cursor, table: str = ANN_TABLE) -> str:
    """The slot table that the view `table` reads (public.embedding_slot, 003_functions.sql:
    the rule the dbt macro uses too)."""
    cur.execute(f"select {APP_SCHEMA}.embedding_slot(%s)", (table,))
    slot = cur.fetchone()[0]
    if slot is None:
        raise UserError(
            f"{APP_SCHEMA}.{table} is not a view over one of {', '.join(slots(table))}: "
            "run `python -m trainer migrate --target postgres` first"
        )
    return slot


def foreign_key(cur: psycopg.Cursor, slot: str) -> str | None:
    cur.execute(
        "select conname from pg_constraint where conrelid = to_regclass(%s) and contype = 'f'",
        (f"{APP_SCHEMA}.{slot}",),
    )
    row = cur.fetchone()
    return row[0] if row else None


# Two connections instead of one: weekly medians of 143k and 172k vectors/s against 86-135k
# (sql/postgres/README.md).
def fill_slots(
    cur: psycopg.Cursor,
    connect: Callable[[], psycopg.Connection],
    batches: Batches,
    dims: dict[str, int],
    model_version: str,
    stamp: Any,
) -> dict[str, str]:
    """Fill the slot each view does not show with the new vectors, both at once, each on
    a connection of its own (from `connect`); returns {view: filled slot}.

    The fills commit on their own, before the publish's transaction points the views at
    them: no reader sees a slot before that (the views show the others), and no other
    publish touches them (this one holds the advisory lock throughout). If the publish
    fails later, the views stay where they were and the next publish refills the slots.
    Two connections keep two server cores busy."""
    filled = {table: other_slot(active_slot(cur, table)) for table in batches}
    with ThreadPoolExecutor(len(batches), thread_name_prefix="fill-slot") as pool:
        jobs = [
            pool.submit(
                _fill_slot,
                connect,
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
    connect: Callable[[], psycopg.Connection],
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
    is then built in one sort, the foreign key later by swap_in."""
    key = EMBEDDING_TABLES[table]
    target = f"{APP_SCHEMA}.{slot}"
    with connect() as con:
        _drop_foreign_key(con, slot)
        with con.transaction(), con.cursor() as cur:
            cur.execute(
                f"truncate {target};"
                f"drop index if exists {APP_SCHEMA}.{slot}{ANN_INDEX_SUFFIX};"
                f"alter table {target} drop constraint if exists {slot}_pkey"
            )
            suffix = (model_version.encode(), timestamptz_bytes(stamp))
            blocks = binary_copy_blocks(ids, matrix, key == "video_id", suffix, dim=dim)
            columns = f"{key}, embedding, model_version, updated_at"
            # freeze: the rows are loaded frozen and their pages all-visible (the truncate
            # above, in the same transaction, allows it), so neither the first readers (hint
            # bits) nor autovacuum rewrite them, nor does autovacuum hold the slot when the
            # next publish empties it
            with cur.copy(f"copy {target} ({columns}) from stdin (format binary, freeze)") as copy:
                for block in blocks:
                    copy.write(block)
            cur.execute(f"alter table {target} add constraint {slot}_pkey primary key ({key})")
            cur.execute(f"analyze {target}")  # statistics before the views point at it


def _drop_foreign_key(con: psycopg.Connection, slot: str) -> None:
    """Drop the slot's foreign key to videos, if it has one, in a transaction of its own.

    Dropping a foreign key takes an exclusive lock on the referenced table, videos, which
    the app reads all the time: held for milliseconds here, not for the whole COPY. The
    wait for it is bounded (SLOT_LOCK_TIMEOUT): when a long query holds videos, the key
    stays and the COPY checks it row by row (slower, same result)."""
    with con.transaction(), con.cursor() as cur:
        name = foreign_key(cur, slot)
        if name is None:
            return
        cur.execute("select set_config('lock_timeout', %s, true)", (SLOT_LOCK_TIMEOUT,))
        try:
            with con.transaction():  # a savepoint: a timeout leaves the key, not an error
                cur.execute(f"alter table {APP_SCHEMA}.{slot} drop constraint {quote_ident(name)}")
        except psycopg.errors.LockNotAvailable:
            return


def swap_in(cur: psycopg.Cursor, filled: dict[str, str]) -> None:
    """Give the filled video slot (its ANN index already built) its foreign key, then point
    each view at its filled slot and empty the old ones.

    The foreign key comes after the ANN index build: its lock on videos (writers wait,
    readers do not) lasts from there to the commit. Replacing the views and emptying the
    old slots take exclusive locks that the views' readers wait on for those same last
    milliseconds; each of those waits is bounded (bounded)."""
    video_slot = filled[ANN_TABLE]

    def swap() -> None:
        if foreign_key(cur, video_slot) is None:
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
    bounded(cur, "point the views at the new slots", relations, swap)


def bounded(
    cur: psycopg.Cursor, step: str, relations: list[str], action: Callable[[], None]
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
            with cur.connection.transaction():
                cur.execute("select set_config('lock_timeout', %s, true)", (SWAP_LOCK_TIMEOUT,))
                action()
                cur.execute("select set_config('lock_timeout', '0', true)")
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == SWAP_ATTEMPTS:
                raise UserError(
                    f"publishing: could not {step} within {SWAP_ATTEMPTS} tries of "
                    f"{SWAP_LOCK_TIMEOUT} ({_lock_holders(cur, relations)}); the "
                    "previous embeddings stay published: publish again once that is over"
                ) from None
            time.sleep(attempt)


def _lock_holders(cur: psycopg.Cursor, relations: list[str]) -> str:
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
