"""A local stand-in for what a Supabase project puts in front of its database, for the Edge
Function's end-to-end test: PostgREST's `/rest/v1/rpc/<fn>` and `/rest/v1/<table>` reads, and
Auth's `GET /auth/v1/user`, served on loopback and running every call on the suite's real
PostgreSQL as the caller's role, with `request.jwt.claims` set as PostgREST sets it, so the
grants and row level security of migration 004 (and of the app's own tables) decide.

Faithful where the function depends on it: a token is the `Authorization: Bearer` header (else
`apikey`); the anon key maps to role anon, a user's token to role authenticated with `sub`; an
unknown token is 401 (PostgREST: JWSError, Auth: bad_jwt); a scalar function returns its value,
a set-returning one a JSON array of objects; `select=`, `col=eq.v`, `order=col.desc`, `limit=`;
database errors come back as PostgREST's `{code, message, details, hint}` with 401 for anon and
403 for authenticated on insufficient privilege, 400 otherwise. Tokens are opaque strings here:
verifying a JWT's signature is Auth's job, not what this test is about.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql

from tests.support.loopback import serving

ANON_KEY = "anon-key-for-tests"


@dataclass(frozen=True)
class Caller:
    role: str
    sub: str | None = None


def _handler(conninfo: str, tokens: dict[str, Caller]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _caller(self) -> Caller | None:
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else self.headers.get("apikey")
            return tokens.get(token or "")

        def _as(self, caller: Caller, statement: sql.Composable, params: list) -> list[tuple]:
            with psycopg.connect(conninfo, autocommit=False) as con:
                claims = {"role": caller.role, **({"sub": caller.sub} if caller.sub else {})}
                con.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                con.execute(sql.SQL("set local role {}").format(sql.Identifier(caller.role)))
                cur = con.execute(statement, params)
                columns = [d.name for d in cur.description]
                return columns, cur.fetchall()

        def _run(self, caller: Caller, statement: sql.Composable, params: list, scalar: bool):
            try:
                columns, rows = self._as(caller, statement, params)
            except psycopg.Error as exc:
                denied = isinstance(exc, psycopg.errors.InsufficientPrivilege)
                status = (401 if caller.role == "anon" else 403) if denied else 400
                diag = exc.diag
                body = {
                    "code": diag.sqlstate,
                    "message": diag.message_primary,
                    "details": diag.message_detail,
                    "hint": diag.message_hint,
                }
                return self._send(status, body)
            if scalar:
                return self._send(200, rows[0][0] if rows else None)
            self._send(200, [dict(zip(columns, row, strict=True)) for row in rows])

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            caller = self._caller()
            if url.path == "/auth/v1/user":
                if caller is None or caller.sub is None:
                    return self._send(
                        401, {"code": 401, "error_code": "bad_jwt", "msg": "invalid JWT"}
                    )
                return self._send(
                    200, {"id": caller.sub, "aud": "authenticated", "role": caller.role}
                )
            if not url.path.startswith("/rest/v1/") or caller is None:
                return self._send(401, {"code": "PGRST301", "message": "JWSError"})
            table = url.path.removeprefix("/rest/v1/")
            query = parse_qsl(url.query)
            columns, where, order, limit, params = ["*"], [], [], None, []
            for key, value in query:
                if key == "select":
                    columns = value.split(",")
                elif key == "order":
                    name, _, direction = value.partition(".")
                    order.append(
                        sql.SQL("{} {}").format(
                            sql.Identifier(name), sql.SQL("desc" if direction == "desc" else "asc")
                        )
                    )
                elif key == "limit":
                    limit = int(value)
                elif value.startswith("eq."):
                    where.append(sql.SQL("{}::text = %s").format(sql.Identifier(key)))
                    params.append(value[3:])
            statement = sql.SQL("select {} from public.{}").format(
                sql.SQL("*")
                if columns == ["*"]
                else sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(table),
            )
            if where:
                statement += sql.SQL(" where ") + sql.SQL(" and ").join(where)
            if order:
                statement += sql.SQL(" order by ") + sql.SQL(", ").join(order)
            if limit is not None:
                statement += sql.SQL(" limit {}").format(sql.Literal(limit))
            self._run(caller, statement, params, scalar=False)

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            caller = self._caller()
            if not url.path.startswith("/rest/v1/rpc/") or caller is None:
                return self._send(401, {"code": "PGRST301", "message": "JWSError"})
            name = url.path.removeprefix("/rest/v1/rpc/")
            args = json.loads(
                self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
            )
            with psycopg.connect(conninfo) as con:
                returns_set = con.execute(
                    "select proretset from pg_proc where pronamespace = 'public'::regnamespace "
                    "and proname = %s",
                    (name,),
                ).fetchone()
            if returns_set is None:
                return self._send(
                    404, {"code": "PGRST202", "message": f"no function public.{name}"}
                )
            named = sql.SQL(", ").join(sql.SQL("{} => %s").format(sql.Identifier(k)) for k in args)
            call = sql.SQL("public.{}({})").format(sql.Identifier(name), named)
            statement = sql.SQL("select * from {}" if returns_set[0] else "select {}").format(call)
            self._run(caller, statement, list(args.values()), scalar=not returns_set[0])

    return Handler


@contextmanager
def fake_supabase(conninfo: str, users: dict[str, str]) -> Iterator[str]:
    """Serve the project on loopback; `users` maps a user's token to their auth uid (`sub`).
    Yields the project URL (SUPABASE_URL)."""
    tokens = {ANON_KEY: Caller("anon"), **{t: Caller("authenticated", s) for t, s in users.items()}}
    with serving(_handler(conninfo, tokens)) as url:
        yield url
