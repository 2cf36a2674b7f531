"""How to reach the database: connection settings from a target, secrets kept out of messages.

The pooler mode matters because every query runs in a short transaction that sets its session
settings locally (see PostgresWarehouse._tx): behind a transaction pooler (Supabase's port
6543) session settings do not survive between transactions, and prepared statements are off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from trainer.backends.profiles import Target
from trainer.errors import UserError

POOLER_PORT = 6543  # Supabase's transaction pooler (Supavisor)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Opens one transaction with the warehouse's session settings (PostgresWarehouse._tx).
Transaction = Callable[[], AbstractContextManager[psycopg.Cursor]]


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
            # The driver quotes the token it could not parse, which may be (part of) the
            # password: every quoted token is masked, as is the password itself.
            detail = re.sub(r'"[^"]*"', '"***"', scrub(str(exc).strip(), url, _url_password(url)))
            raise UserError(
                f"{variable} is not a valid Postgres connection string ({detail})"
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


def connect(settings: ConnectionSettings, connect_timeout: int) -> psycopg.Connection:
    """A new autocommit connection (a warehouse's own, or a publish worker's)."""
    return psycopg.connect(
        settings.conninfo,
        autocommit=True,
        prepare_threshold=None if settings.pooler else 5,
        connect_timeout=connect_timeout,
        client_encoding="utf8",
        application_name="reviews_two_tower",
    )


def connect_error(exc: psycopg.Error, settings: ConnectionSettings) -> UserError:
    """Why the first connection failed, passwords masked, with the variables to check."""
    password = conninfo_to_dict(settings.conninfo).get("password")
    detail = scrub(str(exc).strip(), password, settings.conninfo).splitlines()
    return UserError(
        f"cannot connect to Postgres at {settings.described}: "
        f"{' '.join(line.strip() for line in detail if line.strip())}. Check "
        f"{settings.env_prefix}DATABASE_URL or "
        + "/".join(
            f"{settings.env_prefix}PG{part}"
            for part in ("HOST", "PORT", "USER", "PASSWORD", "DATABASE")
        )
    )


def scrub(message: str, *secrets: str | None) -> str:
    """A driver message with passwords (and URLs' userinfo) masked."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", message)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", message, flags=re.I)


def _url_password(url: str) -> str | None:
    """The password of a `scheme://user:password@host...` URL as written (even when malformed:
    the driver's parse error quotes it), so it can be masked; None without one."""
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@", url)
    if not match or ":" not in match.group(1):
        return None
    return match.group(1).split(":", 1)[1] or None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
