"""What each Supabase role may read and call, on a real Postgres+pgvector (sql/postgres/004).

The rule: anon and authenticated read only `videos` and `popular_videos` and reach the embeddings
only through the security-definer functions, each returning just its answer; no API role reads
a reviewer's vector or history (user_embeddings, reviewed_videos, the slot tables) or any run
record; recommend_videos, which takes any reviewer id, is service_role's; a signed-in user gets
their own recommendations from recommend_for_me, identified by the JWT. The database here starts
with a Supabase project's default privileges (ALL on every new table and function for the API
roles), which the migrations must take back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pg_server import PgServer
from tests.support.serving_world import World, jwt_sub, make_world, publish
from trainer.backends.base import MAX_K

DB = "roles_tests"
API_ROLES = ("anon", "authenticated", "service_role")
TABLE_PRIVILEGES = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN",
)  # fmt: skip
READ_WRITE = {"SELECT", "INSERT", "UPDATE", "DELETE"}
PRIVATE = (
    "video_embeddings", "video_embeddings_a", "video_embeddings_b", "user_embeddings",
    "user_embeddings_a", "user_embeddings_b", "reviewed_videos", "model_runs",
)  # fmt: skip
PUBLIC_READ = ("videos", "popular_videos")
# relation -> role -> the privileges it must hold, exactly
TABLE_MATRIX = {
    **{rel: {"anon": set(), "authenticated": set(), "service_role": READ_WRITE} for rel in PRIVATE},
    **{
        rel: {"anon": {"SELECT"}, "authenticated": {"SELECT"}, "service_role": READ_WRITE}
        for rel in PUBLIC_READ
    },
}
FUNCTION_MATRIX = {  # function -> the API roles that may execute it
    "public.recommend_videos(text, integer, uuid[])": {"service_role"},
    "public.recommend_for_me(integer, uuid[])": {"authenticated", "service_role"},
    "public.my_model_version()": {"authenticated", "service_role"},
    "public.my_user_id()": {"authenticated", "service_role"},
    "public.similar_videos(uuid, integer, uuid[])": set(API_ROLES),
    "public.recommend_for_likes(uuid[], integer, uuid[])": set(API_ROLES),
}
# The ANN rules (003): plain functions for the publish and dbt, nothing the app calls.
RULE_FUNCTIONS = {
    f"public.{f}": {"service_role"}
    for f in (
        "ann_ivfflat_lists(bigint)",
        "ann_ivfflat_probes(integer, integer)",
        "ann_hnsw_ef_search()",
        "ann_index_memory_mb(bigint, integer)",
        "ann_dim()",
        "embedding_slot(text)",
    )
}


def supabase_default_privileges(con: psycopg.Connection) -> None:
    """What a Supabase project does for objects its `postgres` role creates in public."""
    for kind in ("tables", "functions", "sequences"):
        con.execute(
            f"alter default privileges in schema public grant all on {kind} "
            "to anon, authenticated, service_role"
        )


@pytest.fixture(scope="module")
def world(pg_env: PgServer) -> Iterator[World]:
    for world in make_world(pg_env, DB, before_migrations=supabase_default_privileges):
        publish(world.wh, world, "roles1", seed=41)
        yield world


def held(con: psycopg.Connection, role: str, relation: str) -> set[str]:
    return {
        p
        for p in TABLE_PRIVILEGES
        if con.execute(
            "select has_table_privilege(%s, %s, %s)", (role, f"public.{relation}", p)
        ).fetchone()[0]
    }


def assert_the_matrix(con: psycopg.Connection) -> None:
    for relation, expected in TABLE_MATRIX.items():
        for role in API_ROLES:
            assert held(con, role, relation) == expected[role], (role, relation)
    for function, roles in {**FUNCTION_MATRIX, **RULE_FUNCTIONS}.items():
        for role in API_ROLES:
            can = con.execute(
                "select has_function_privilege(%s, %s, 'execute')", (role, function)
            ).fetchone()[0]
            assert can == (role in roles), (role, function)
        acl = con.execute(
            "select proacl::text from pg_proc where oid = %s::regprocedure", (function,)
        ).fetchone()[0]
        assert not [e for e in acl.strip("{}").split(",") if e.startswith("=")], acl  # PUBLIC


def as_role(con: psycopg.Connection, role: str, claims: dict | None = None) -> psycopg.Connection:
    """Switch `con` to `role`, with the JWT claims PostgREST would set for the request."""
    con.execute("reset role")
    con.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(claims or {}),))
    con.execute(f"set role {role}")
    return con


def top(con: psycopg.Connection, sql: str, params: tuple) -> list[tuple[str, float]]:
    return [(str(v), s) for v, _, s in con.execute(sql, params).fetchall()]


def test_each_role_holds_exactly_its_privileges_despite_supabase_defaults(world: World) -> None:
    with world.connect() as con:
        assert_the_matrix(con)


def test_functions_are_security_definer_with_an_empty_search_path(world: World) -> None:
    with world.connect() as con:
        rows = con.execute(
            "select oid::regprocedure::text, prosecdef, provolatile, proconfig from pg_proc "
            "where oid = any(%s::regprocedure[])",
            (list(FUNCTION_MATRIX),),
        ).fetchall()
    assert len(rows) == len(FUNCTION_MATRIX)
    for name, definer, volatility, config in rows:
        assert definer and volatility == "s", name
        assert 'search_path=""' in config, name


def test_a_rerun_takes_back_what_earlier_versions_or_a_dashboard_granted(world: World) -> None:
    with world.connect() as con:
        con.execute("grant all on all tables in schema public to anon, authenticated")
        con.execute("grant all on all functions in schema public to public, anon")
        con.execute(  # what migration 004 of earlier versions made
            "create policy authenticated_read on public.user_embeddings_a for select "
            "to authenticated using (true)"
        )
        assert "SELECT" in held(con, "anon", "user_embeddings_a")
    world.wh.ensure_app_schema()
    with world.connect() as con:
        assert_the_matrix(con)
        policies = set(
            con.execute(
                "select tablename::text, policyname::text, cmd, array_to_string(roles, ',') "
                "from pg_policies where schemaname = 'public'"
            ).fetchall()
        )
        tables = [r for r in TABLE_MATRIX if r not in ("video_embeddings", "user_embeddings")]
        assert policies == {
            *((t, "service_role_write", "ALL", "service_role") for t in tables),
            *((t, f"{r}_read", "SELECT", r) for t in PUBLIC_READ for r in API_ROLES[:2]),
        }
        rls = con.execute(
            "select bool_and(relrowsecurity), count(*) from pg_class "
            "where oid = any(%s::regclass[])",
            ([f"public.{t}" for t in tables],),
        ).fetchone()
        assert rls == (True, len(tables))


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_read_no_vector_history_or_run_and_write_nothing(world: World, role: str) -> None:
    user = world.user_ids[0]
    with world.connect() as con:
        as_role(con, role, {"sub": user, "role": role})
        for relation in PRIVATE:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                con.execute(f"select count(*) from public.{relation}")
        for relation in PUBLIC_READ:
            assert con.execute(f"select count(*) from public.{relation}").fetchone()[0] > 0
        for statement in (
            "delete from public.videos",
            "update public.popular_videos set positives = 0",
            "truncate public.popular_videos",
            "lock table public.video_embeddings_a in access exclusive mode",
            "insert into public.user_embeddings_a (user_id, embedding, model_version) "
            "values ('x', array_fill(0, array[256])::vector, 'x')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                con.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
            con.execute("select * from public.recommend_videos(%s, 5)", (user,))


def test_service_role_reads_writes_and_recommends_for_anyone(world: World) -> None:
    user = world.user_ids[1]
    with world.connect() as con:
        owner = top(con, "select * from public.recommend_videos(%s, 5)", (user,))
        as_role(con, "service_role")
        assert top(con, "select * from public.recommend_videos(%s, 5)", (user,)) == owner
        con.execute("begin")
        con.execute("delete from public.user_embeddings where user_id = %s", (user,))
        assert con.execute("select count(*) from public.reviewed_videos").fetchone()[0] > 0
        con.execute("rollback")


def test_recommend_for_me_answers_for_the_jwt_and_nobody_else(world: World) -> None:
    me, other = world.user_ids[2], world.user_ids[3]
    with world.connect() as con:
        mine = top(con, "select * from public.recommend_videos(%s, 5)", (me,))
        theirs = top(con, "select * from public.recommend_videos(%s, 5)", (other,))
        popular = top(con, "select * from public.recommend_videos(null, 5)", ())
        cold = top(con, "select * from public.recommend_videos('app:cold_user', 5)", ())
        assert len({tuple(mine), tuple(theirs), tuple(popular)}) == 3

        as_role(con, "authenticated", {"sub": jwt_sub(me), "role": "authenticated"})
        assert top(con, "select * from public.recommend_for_me(5)", ()) == mine
        assert {v for v, _ in mine}.isdisjoint(world.reviewed[me])
        as_role(con, "authenticated", {"sub": jwt_sub(other), "role": "authenticated"})
        assert top(con, "select * from public.recommend_for_me(5)", ()) == theirs
        as_role(con, "authenticated", {"sub": "cold_user"})  # no vector: popular, own excluded
        assert top(con, "select * from public.recommend_for_me(5)", ()) == cold
        as_role(con, "authenticated", {"role": "authenticated"})  # no sub: nobody's
        assert top(con, "select * from public.recommend_for_me(5)", ()) == popular
        # PostgREST before v10 set one setting per claim
        as_role(con, "authenticated")
        con.execute("select set_config('request.jwt.claim.sub', %s, false)", (jwt_sub(me),))
        assert top(con, "select * from public.recommend_for_me(5)", ()) == mine
        con.execute("select set_config('request.jwt.claim.sub', '', false)")
        as_role(con, "anon", {"sub": me, "role": "anon"})
        with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
            con.execute("select * from public.recommend_for_me(5)")


def test_my_model_version_says_whether_the_caller_has_a_vector(world: World) -> None:
    """What the Edge Function asks before recommend_for_me: vector, or likes / popular; and
    my_user_id(), the caller's key, 'app:' || sub (dbt's app_user_key, tests/e2e/test_app_likes)."""
    me = jwt_sub(world.user_ids[2])
    with world.connect() as con:
        for claims, expected, key in (
            ({"sub": me, "role": "authenticated"}, "roles1", world.user_ids[2]),
            ({"sub": "cold_user", "role": "authenticated"}, None, "app:cold_user"),  # no vector
            ({"role": "authenticated"}, None, None),
        ):
            as_role(con, "authenticated", claims)
            assert con.execute("select public.my_model_version()").fetchone() == (expected,)
            assert con.execute("select public.my_user_id()").fetchone() == (key,)
        as_role(con, "anon", {"sub": me, "role": "anon"})
        with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
            con.execute("select public.my_model_version()")


def test_visitors_get_similar_videos_and_recommendations_from_likes(world: World) -> None:
    video, likes = world.video_ids[0], world.video_ids[5:8]
    with world.connect() as con:
        similar = top(con, "select * from public.similar_videos(%s, 5)", (video,))
        liked = top(con, "select * from public.recommend_for_likes(%s::uuid[], 5)", (likes,))
        for role in ("anon", "authenticated"):
            as_role(con, role)
            assert top(con, "select * from public.similar_videos(%s, 5)", (video,)) == similar
            assert (
                top(con, "select * from public.recommend_for_likes(%s::uuid[], 5)", (likes,))
                == liked
            )
    assert len(similar) == len(liked) == 5


def test_every_serving_function_bounds_k_for_every_caller(world: World) -> None:
    """A caller cannot read the whole catalog: k is capped at MAX_K, and k <= 0 or null returns
    nothing, straight through SQL as PostgREST would call it (as the API roles)."""
    me = {"sub": jwt_sub(world.user_ids[0]), "role": "authenticated"}
    calls = [  # (role, claims, call): every path has more than MAX_K candidates
        ("service_role", None, "recommend_videos(%s, %s)", (world.user_ids[0],)),
        ("authenticated", me, "recommend_for_me(%s)", ()),
        ("anon", None, "similar_videos(%s, %s)", (world.video_ids[0],)),
        ("anon", None, "recommend_for_likes(%s::uuid[], %s)", (world.video_ids[:3],)),
    ]
    with world.connect() as con:
        con.execute("set enable_indexscan = off")  # exact scans: the ANN may return fewer rows
        for role, claims, call, args in calls:
            as_role(con, role, claims)
            count = f"select count(*) from public.{call}"
            assert con.execute(count, (*args, 1_000_000)).fetchone()[0] == MAX_K, call
            assert con.execute(count, (*args, MAX_K - 1)).fetchone()[0] == MAX_K - 1
            for k in (0, -5, None):
                assert con.execute(count, (*args, k)).fetchone()[0] == 0


def test_a_role_without_grants_reads_and_calls_nothing(world: World) -> None:
    with world.connect() as con:
        con.execute("drop role if exists stranger")
        con.execute("create role stranger nologin")
        as_role(con, "stranger")
        for relation in (*PRIVATE, "popular_videos"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                con.execute(f"select 1 from public.{relation}")
        for function in FUNCTION_MATRIX:
            name = function.split("(")[0]
            args = {
                "recommend_videos": "('user000', 5)",
                "recommend_for_me": "(5)",
                "my_model_version": "()",
                "my_user_id": "()",
            }.get(name.split(".")[1], "(null, 5)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                con.execute(f"select * from {name}{args}")
