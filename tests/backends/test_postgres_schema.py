"""Migrations (sql/postgres), connection settings and setup errors on a real Postgres+pgvector."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from tests.support.pg_server import PgServer
from trainer.backends.postgres import (
    PostgresWarehouse,
    connection_settings,
    render_migrations,
)
from trainer.backends.profiles import Target, load_target
from trainer.errors import UserError

SLOT = "select public.embedding_slot(%s)"  # the slot a view reads (003_functions.sql)


def _warehouse() -> PostgresWarehouse:
    return PostgresWarehouse.from_target(load_target("postgres"))


def _catalog_snapshot(con: psycopg.Connection) -> dict[str, list]:
    """Everything the migrations define, as comparable text."""
    queries = {
        "columns": "select table_name, column_name, data_type, is_nullable, column_default "
        "from information_schema.columns where table_schema = 'public' order by 1, 2",
        "types": "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "from pg_attribute a join pg_class c on c.oid = a.attrelid "
        "join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' "
        "and a.attnum > 0 and not a.attisdropped order by 1, 2",
        "policies": "select tablename, policyname, cmd, roles::text, qual, with_check "
        "from pg_policies where schemaname = 'public' order by 1, 2",
        "rls": "select relname, relrowsecurity from pg_class where relnamespace = "
        "'public'::regnamespace and relkind = 'r' order by 1",
        "functions": "select p.proname, md5(p.prosrc), p.proconfig::text, p.prosecdef, "
        "p.provolatile, p.proacl::text from pg_proc p where p.pronamespace = "
        "'public'::regnamespace and p.proname in ('recommend_videos', 'similar_videos', "
        "'recommend_for_likes', 'recommend_for_me') order by 1",
        "grants": "select table_name, grantee, privilege_type from "
        "information_schema.role_table_grants where table_schema = 'public' order by 1, 2, 3",
        "default_acl": "select defaclnamespace::regnamespace::text, defaclacl::text "
        "from pg_default_acl order by 1",
    }
    return {name: con.execute(sql).fetchall() for name, sql in queries.items()}


@pytest.fixture(scope="module")
def migrated(pg_env: PgServer) -> PgServer:
    pg_env.database("schema_tests")
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema()
    return pg_env


def test_migrations_create_the_app_schema(migrated: PgServer) -> None:
    with migrated.connect("schema_tests") as con:
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'public'"
            )
        }
        assert {
            "videos",
            "video_embeddings",
            "user_embeddings",
            "model_runs",
            "popular_videos",
        } <= tables
        assert con.execute("select extname from pg_extension where extname = 'vector'").fetchone()
        assert con.execute("select to_regnamespace('recsys') is not null").fetchone()[0]
        types = dict(
            con.execute(
                "select attrelid::regclass::text, format_type(atttypid, atttypmod) from "
                "pg_attribute where attname = 'embedding' and attrelid in "
                "('public.video_embeddings'::regclass, 'public.user_embeddings'::regclass)"
            ).fetchall()
        )
        assert types == {"video_embeddings": "vector(256)", "user_embeddings": "vector(256)"}
        json_types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_name = 'model_runs' and column_name in "
                "('config', 'metrics', 'notes', 'started_at')"
            ).fetchall()
        )
        assert json_types == {
            "config": "jsonb",
            "metrics": "jsonb",
            "notes": "jsonb",
            "started_at": "timestamp with time zone",
        }
        # video_embeddings: a security_invoker view over slot a until the first publish
        assert con.execute(
            "select c.relkind::text, c.reloptions, pg_get_viewdef(c.oid) from pg_class as c "
            "where c.oid = 'public.video_embeddings'::regclass"
        ).fetchone()[:2] == ("v", ["security_invoker=true"])
        assert con.execute(SLOT, ("video_embeddings",)).fetchall() == [("video_embeddings_a",)]
        fk = con.execute(
            "select confdeltype from pg_constraint where contype = 'f' "
            "and conrelid = 'public.video_embeddings_a'::regclass "
            "and confrelid = 'public.videos'::regclass"
        ).fetchone()
        assert fk == ("c",)  # on delete cascade
        # videos: product_url unique, id defaults to gen_random_uuid()
        row = con.execute(
            "insert into public.videos (product_url) values ('https://example.com/v/1') "
            "returning id, created_at"
        ).fetchone()
        assert row[0] is not None and row[1] is not None
        with pytest.raises(psycopg.errors.UniqueViolation):
            con.execute(
                "insert into public.videos (product_url) values ('https://example.com/v/1')"
            )
        con.execute("delete from public.videos")


def test_migrations_are_idempotent(migrated: PgServer) -> None:
    with migrated.connect("schema_tests") as con:
        before = _catalog_snapshot(con)
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema()
        warehouse.ensure_app_schema()
    with migrated.connect("schema_tests") as con:
        assert _catalog_snapshot(con) == before


def test_column_dimension_is_configurable(pg_env: PgServer) -> None:
    pg_env.database("schema_dim64")
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema(64)
        assert warehouse.embedding_column_dim("video_embeddings") == 64
        assert warehouse.embedding_column_dim("user_embeddings") == 64
        with pytest.raises(UserError, match="between 1 and 2000"):
            warehouse.ensure_app_schema(4096)


def test_an_existing_app_videos_table_is_left_alone(pg_env: PgServer) -> None:
    pg_env.database("schema_app_videos")
    with pg_env.connect("schema_app_videos") as con:
        con.execute(
            "create table public.videos (id uuid primary key default gen_random_uuid(), "
            "product_url text not null unique, title text, created_at timestamptz default now())"
        )
        con.execute(
            "insert into public.videos (product_url, title) values ('https://a/cid=x1', 'x')"
        )
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema()
    with pg_env.connect("schema_app_videos") as con:
        assert con.execute("select title from public.videos").fetchall() == [("x",)]
        assert con.execute(
            "select relrowsecurity from pg_class where oid = 'public.videos'::regclass"
        ).fetchone() == (False,)
        assert not con.execute("select 1 from pg_policies where tablename = 'videos'").fetchall()
        # the published embeddings still reference it
        assert con.execute(
            "select count(*) from pg_constraint where "
            "conrelid = 'public.video_embeddings_a'::regclass "
            "and confrelid = 'public.videos'::regclass"
        ).fetchone() == (1,)


def test_an_install_from_before_the_slots_keeps_its_vectors(pg_env: PgServer) -> None:
    """video_embeddings used to be a table: the migration makes it slot a (rows, keys, index,
    policies and grants with it) under the view, and the next publish fills slot b."""
    pg_env.database("schema_before_slots")
    video = "6f1f6a4e-3c52-4d53-9d0e-0b9d1c1a7a01"
    with pg_env.connect("schema_before_slots") as con:
        con.execute("create extension vector")
        con.execute(
            "create table public.videos (id uuid primary key, product_url text not null unique);"
            "create table public.video_embeddings (video_id uuid primary key "
            "references public.videos (id) on delete cascade, embedding vector(256) not null, "
            "model_version text not null, updated_at timestamptz not null default now());"
            "create index video_embeddings_embedding_ann on public.video_embeddings using "
            "ivfflat ((subvector(embedding, 1, 256)::vector(256)) vector_cosine_ops) "
            "with (lists = 10);"
            "create policy anon_read on public.video_embeddings for select to anon using (true);"
            "create table public.user_embeddings (user_id text primary key, "
            "embedding vector(256) not null, model_version text not null, "
            "updated_at timestamptz not null default now())"
        )
        con.execute(
            "insert into public.user_embeddings (user_id, embedding, model_version) "
            "values ('u0', array_fill(0.5, array[256])::vector, 'old')"
        )
        con.execute("insert into public.videos values (%s, 'https://a/1')", (video,))
        con.execute(
            "insert into public.video_embeddings (video_id, embedding, model_version) "
            "values (%s, array_fill(0.5, array[256])::vector, 'old')",
            (video,),
        )
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema()
    with pg_env.connect("schema_before_slots") as con:
        before = _catalog_snapshot(con)
        assert con.execute(SLOT, ("video_embeddings",)).fetchall() == [("video_embeddings_a",)]
        assert con.execute(
            "select video_id::text, model_version from public.video_embeddings"
        ).fetchall() == [(video, "old")]
        names = {
            r[0]
            for r in con.execute(
                "select conname from pg_constraint where conrelid = "
                "'public.video_embeddings_a'::regclass and contype in ('p', 'f') "
                "union all select indexname from pg_indexes "
                "where tablename = 'video_embeddings_a'"
            )
        }
        assert names == {
            "video_embeddings_a_pkey",
            "video_embeddings_a_video_id_fkey",
            "video_embeddings_a_embedding_ann",
        }
        # the old table's policies went with the rename, and 004 took back anon's read
        assert con.execute(
            "select policyname from pg_policies where tablename = 'video_embeddings_a'"
        ).fetchall() == [("service_role_write",)]
        assert con.execute(SLOT, ("user_embeddings",)).fetchall() == [("user_embeddings_a",)]
        assert con.execute(
            "select user_id, model_version from public.user_embeddings"
        ).fetchall() == [("u0", "old")]
        assert con.execute(
            "select conname from pg_constraint where contype = 'p' "
            "and conrelid = 'public.user_embeddings_a'::regclass"
        ).fetchall() == [("user_embeddings_a_pkey",)]
    with _warehouse() as warehouse:
        warehouse.ensure_app_schema()  # idempotent on the converted install too
        with pg_env.connect("schema_before_slots") as con:
            assert _catalog_snapshot(con) == before
        vector = np.ones((1, 8), dtype=np.float32)
        warehouse.publish_embeddings(([video], vector), (["u1"], vector), "new")
        assert [r.video_id for r in warehouse.similar(video, 3)] == []  # the only video
    with pg_env.connect("schema_before_slots") as con:
        assert con.execute(SLOT, ("video_embeddings",)).fetchall() == [("video_embeddings_b",)]
        assert con.execute("select model_version from public.video_embeddings").fetchall() == [
            ("new",)
        ]
        assert con.execute(SLOT, ("user_embeddings",)).fetchall() == [("user_embeddings_b",)]
        assert con.execute(
            "select (select count(*) from public.video_embeddings_a), "
            "(select count(*) from public.user_embeddings_a)"
        ).fetchone() == (0, 0)


def test_migrations_without_api_roles_apply_on_plain_postgres(pg_env: PgServer) -> None:
    """No anon/authenticated/service_role: the grants and policies are skipped, not errors."""
    rendered = dict(render_migrations(256, "recsys"))
    assert set(rendered) == {
        "001_extensions.sql",
        "002_tables.sql",
        "003_functions.sql",
        "004_security.sql",
    }
    assert all(
        "{" + "dim}" not in text and "{marts_schema" not in text for text in rendered.values()
    )
    pg_env.database("schema_no_roles")
    with pg_env.connect("schema_no_roles") as con:
        con.execute("begin")
        for role in ("anon", "authenticated", "service_role"):
            # hide the roles from the migration's pg_roles checks for this transaction
            con.execute(f"alter role {role} rename to {role}_hidden")
        try:
            con.execute("set local check_function_bodies = off")
            for name in sorted(rendered):
                text = rendered[name].replace("{vector_schema}", "public")
                con.execute(text)
            assert con.execute("select count(*) from pg_policies").fetchone() == (0,)
        finally:
            con.execute("rollback")


def test_missing_extension_that_cannot_be_created_is_a_clear_error(pg_env: PgServer) -> None:
    pg_env.database("schema_noext")
    with pg_env.connect() as con:
        con.execute("drop role if exists migrator")
        con.execute("create role migrator login")
        con.execute("grant create on database schema_noext to migrator")
    warehouse = PostgresWarehouse.from_target(pg_env.target("schema_noext", user="migrator"))
    with warehouse, pytest.raises(UserError) as info:
        warehouse.ensure_app_schema()
    message = str(info.value)
    assert "pgvector" in message and "cannot create it" in message
    assert "create extension vector" in message
    with pg_env.connect("schema_noext") as con:  # nothing half-applied
        assert con.execute("select to_regclass('public.video_embeddings')").fetchone() == (None,)


def test_bad_dsn_is_a_clear_error_without_the_password(
    pg_env: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-Passw0rd"
    target = load_target("postgres")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://someone:{secret}@/nodb?host=/nonexistent/dir")
    with pytest.raises(UserError) as info:
        PostgresWarehouse.from_target(target)
    message = str(info.value)
    assert message.startswith("cannot connect to Postgres at someone@/nonexistent/dir:5432/nodb")
    assert secret not in message

    monkeypatch.setenv("DATABASE_URL", f"postgresql://someone:{secret}@db.example:notaport/x")
    with pytest.raises(UserError) as info:
        PostgresWarehouse.from_target(target)
    assert secret not in str(info.value)

    monkeypatch.setenv("DATABASE_URL", f"host=/tmp password={secret} dbname")
    with pytest.raises(UserError) as info:
        PostgresWarehouse.from_target(target)
    assert "not a valid Postgres connection string" in str(info.value)
    assert secret not in str(info.value)

    monkeypatch.delenv("DATABASE_URL")
    settings = dict(target.settings, dbname="no_such_database", password=secret)
    with pytest.raises(UserError, match='database "no_such_database" does not exist') as info:
        PostgresWarehouse.from_target(Target(target.name, target.kind, target.schema, settings))
    assert secret not in str(info.value)


def test_database_url_wins_over_pg_variables(
    pg_env: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pg_env.database("schema_url")
    monkeypatch.setenv("PGDATABASE", "postgres")
    monkeypatch.setenv(
        "DATABASE_URL",
        f"postgresql://postgres@/schema_url?host={pg_env.host}&port={pg_env.port}",
    )
    with PostgresWarehouse.from_target(load_target("postgres")) as warehouse:
        assert warehouse.read("select current_database() as db")["db"][0] == "schema_url"


def test_pooler_mode_disables_prepared_statements(
    pg_env: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = load_target("postgres")
    supabase = Target(
        target.name,
        target.kind,
        target.schema,
        dict(target.settings, host="aws-0-eu-central-1.pooler.supabase.com", port=6543),
    )
    assert connection_settings(supabase, {}).pooler
    assert not connection_settings(target, {}).pooler
    assert connection_settings(target, {"PG_POOLER": "1"}).pooler
    url = {"DATABASE_URL": "postgresql://postgres.ref:pw@aws-0.pooler.supabase.com:6543/postgres"}
    settings = connection_settings(target, url)
    assert settings.pooler and "pw" not in settings.described

    monkeypatch.setenv("PG_POOLER", "1")
    with PostgresWarehouse.from_target(target) as warehouse:
        assert warehouse.con.prepare_threshold is None
        for _ in range(8):  # past psycopg's default prepare threshold (5)
            assert not warehouse.table_exists("no_such_table")  # a parameterized query
            assert warehouse.read("select 1 as x, count(*) as n from pg_class")["x"][0] == 1
        assert warehouse.con.execute("select count(*) from pg_prepared_statements").fetchone() == (
            0,
        )


def test_unix_socket_host_from_the_profile(pg_env: PgServer) -> None:
    if not pg_env.host.startswith("/"):
        pytest.skip(f"{pg_env.host} is a TCP host (TEST_DATABASE_URL): no unix socket to test")
    target = load_target("postgres")
    assert target.settings["host"] == pg_env.host
    settings = connection_settings(target, {})
    assert f"host={pg_env.host}" in settings.conninfo
    assert "sslmode" not in settings.conninfo  # no TLS over a unix socket
