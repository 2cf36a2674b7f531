"""One run at a time per target: the lock a run holds from its load to its run record.

Without it a `load` landing while a `pipeline` is in `dbt build` is trained and published under
the first run's name, and two runs on one DuckDB file end in the engine's own lock error. Every
command that writes (load, train, pipeline, rollback, migrate, snapshot's restore) takes it and
holds it to the end; a second one is refused at once (no waiting: a weekly job that queues
behind a stuck one helps nobody), told who holds it, and exits 2.

- DuckDB: an exclusive `flock` on `<file>.run-lock` beside the database file, which names its
  holder (pid, host, command, since). The kernel drops the lock when the holder exits, however it
  exits, so a killed run never leaves a stale lock; the file itself stays, naming the last holder.
- Postgres: an advisory lock (key: this project's constant and a CRC of the marts schema, so two
  targets in one database do not block each other) on a connection of its own, named by its
  `application_name`; the holder is read back from pg_locks and pg_stat_activity. Behind a
  transaction pooler a session lock would be dropped between transactions, so there the lock is
  a transaction lock in a transaction held open for the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from trainer.backends.profiles import Target
from trainer.errors import UserError

LOCK_CLASS = 0x52545754  # "RTWT": this project's advisory lock namespace
LOCK_SUFFIX = ".run-lock"


def holder_description(command: str) -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def run_lock(target: Target, command: str | None = None) -> Iterator[None]:
    """Hold `target`'s run lock for the block, or raise UserError naming who holds it."""
    command = command or " ".join(["python -m trainer", *sys.argv[1:]])[:200]
    if target.kind == "duckdb":
        with _duckdb_lock(target, command):
            yield
    elif target.kind == "postgres":
        with _postgres_lock(target, command):
            yield
    else:
        raise ValueError(f"unsupported target type {target.kind!r}")


@contextmanager
def _duckdb_lock(target: Target, command: str) -> Iterator[None]:
    path = lock_file(target.duckdb_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(_held_message(target, duckdb_holder(target.duckdb_path))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_description(command)).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def lock_file(database: Path) -> Path:
    """The file whose flock is a DuckDB database's run lock: beside it, named after it."""
    return Path(str(database) + LOCK_SUFFIX)


def duckdb_holder(database: Path) -> str:
    """Who holds (or last held) the run lock of a DuckDB file, for messages."""
    try:
        holder = json.loads(lock_file(database).read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not holder:
        return "another process"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
        f"({holder.get('command')})"
    )


def lock_key(target: Target) -> tuple[int, int]:
    """The advisory lock's two int4 keys: the project's class and the schema's CRC-32."""
    crc = zlib.crc32(target.schema.encode())
    return LOCK_CLASS, crc - (1 << 32) if crc >= 1 << 31 else crc


@contextmanager
def _postgres_lock(target: Target, command: str) -> Iterator[None]:
    import psycopg

    from trainer.backends.postgres.connection import connect_error, connection_settings

    settings = connection_settings(target)
    name = f"reviews_two_tower run lock: {command}"[:63]
    try:
        con = psycopg.connect(settings.conninfo, application_name=name, autocommit=True)
    except psycopg.Error as exc:  # the same masked message as any first connection
        raise connect_error(exc, settings) from None
    key = lock_key(target)
    try:
        if settings.pooler:  # a transaction lock in a transaction held for the run
            con.execute("begin")
            got = con.execute("select pg_try_advisory_xact_lock(%s, %s)", key).fetchone()
        else:
            got = con.execute("select pg_try_advisory_lock(%s, %s)", key).fetchone()
        if not (got and got[0]):
            raise UserError(_held_message(target, _postgres_holder(con, key)))
        yield
    finally:
        con.close()  # ends the session (and any open transaction): the lock goes with it


def _postgres_holder(con, key: tuple[int, int]) -> str:
    row = con.execute(
        "select a.pid, a.application_name, a.client_addr::text, a.backend_start "
        "from pg_locks as l join pg_stat_activity as a on a.pid = l.pid "
        "where l.locktype = 'advisory' and l.granted and l.classid::bigint = %s "
        "and l.objid::bigint = %s and l.objsubid = 2",
        (key[0], key[1] % (1 << 32)),
    ).fetchone()
    if row is None:
        return "another session"
    pid, app, client, since = row
    return f"backend pid {pid} from {client or 'a local socket'} since {since} ({app})"


def _held_message(target: Target, holder: str) -> str:
    return (
        f"another run holds the run lock on target {target.name}: {holder}. "
        "Wait for it to finish (or stop it), then run again."
    )
