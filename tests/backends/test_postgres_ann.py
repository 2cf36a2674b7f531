"""The ANN index on a real Postgres + pgvector: rebuilt after every publish on the model's dims,
lists and probes from the rules in SQL (trainer/backends/postgres/ann.py), the dbt macro the
same way, hnsw as the other method."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from benchmarks.postgres_probes import explain_function
from tests.support.pg_server import PgServer
from tests.support.serving_world import (
    MODEL_DIM,
    N_VIDEOS,
    World,
    exact_top,
    make_world,
    publish,
    published_slot,
    state,
    vid,
)
from trainer.backends.postgres import (
    ANN_INDEX_SUFFIX,
    PostgresWarehouse,
    ann_expression,
    hnsw_ef_search,
    ivfflat_lists,
    ivfflat_probes,
)
from trainer.transform.dbt import run_dbt

DB = "ann_tests"


def similar_probes(con: psycopg.Connection, lists: int) -> int:
    return ivfflat_probes(con, lists, "similar_videos")


def ann_index(con: psycopg.Connection) -> str:
    return published_slot(con) + ANN_INDEX_SUFFIX


def index_info(con: psycopg.Connection) -> tuple[str, dict[str, str]]:
    amname, options = con.execute(
        "select am.amname, c.reloptions from pg_class c join pg_am am on am.oid = c.relam "
        "where c.oid = to_regclass(%s)",
        (f"public.{ann_index(con)}",),
    ).fetchone()
    return amname, dict(o.split("=", 1) for o in options or [])


def probes_by_function(con: psycopg.Connection) -> dict[str, str]:
    rows = con.execute(
        "select proname, setting from pg_proc, unnest(proconfig) as setting "
        "where pronamespace = 'public'::regnamespace "
        "and proname in ('recommend_videos', 'similar_videos') "
        "and setting like 'ivfflat.probes=%'"
    ).fetchall()
    return dict(rows)


def ann_dims(con: psycopg.Connection) -> tuple[str, str, str]:
    """The index's definition and both functions' bodies (to look for the ANN expression)."""
    return con.execute(
        "select pg_get_indexdef(to_regclass(%s)), "
        "(select prosrc from pg_proc where oid = 'public.recommend_videos(text, integer, uuid[])'"
        "::regprocedure), "
        "(select prosrc from pg_proc where oid = 'public.similar_videos(uuid, integer, uuid[])'"
        "::regprocedure)",
        (f"public.{ann_index(con)}",),
    ).fetchone()


def assert_index_matches_functions(con: psycopg.Connection, model_dim: int) -> None:
    index, recommend, similar = ann_dims(con)
    assert f"subvector(embedding, 1, {model_dim})" in index
    assert ann_expression("e.embedding", model_dim, "public") in recommend
    assert ann_expression("e.embedding", model_dim, "public") in similar
    con.execute("set enable_seqscan = off")
    plan = con.execute(
        "explain select video_id from public.video_embeddings as e order by "
        f"{ann_expression('e.embedding', model_dim, 'public')} operator(public.<=>) "
        f"(select {ann_expression('q.embedding', model_dim, 'public')} "
        "from public.video_embeddings as q limit 1) limit 5"
    ).fetchall()
    con.execute("reset enable_seqscan")
    assert ann_index(con) in "\n".join(r[0] for r in plan)


def function_probes(con: psycopg.Connection) -> set[str]:
    rows = con.execute(
        "select unnest(proconfig) from pg_proc where pronamespace = 'public'::regnamespace "
        "and proname in ('recommend_videos', 'similar_videos')"
    ).fetchall()
    return {r[0] for r in rows if r[0].startswith("ivfflat.probes=")}


@pytest.fixture(scope="module")
def world(pg_env: PgServer) -> Iterator[World]:
    yield from make_world(pg_env, DB)


# -- the ANN index ------------------------------------------------------------------------------
def test_the_index_is_rebuilt_after_every_publish_with_lists_from_the_rule(world: World) -> None:
    publish(world.wh, world, "i1", seed=14)
    with world.connect() as con:
        first = state(con)["index_oid"]
        assert index_info(con) == ("ivfflat", {"lists": str(ivfflat_lists(con, N_VIDEOS))})
        assert function_probes(con) == {
            f"ivfflat.probes={ivfflat_probes(con, ivfflat_lists(con, N_VIDEOS))}"
        }
    publish(world.wh, world, "i2", seed=15)
    with world.connect() as con:
        assert state(con)["index_oid"] != first
        assert con.execute(
            "select count(*) from pg_indexes where tablename like 'video_embeddings_%%' "
            "and indexname like %s",
            (f"%{ANN_INDEX_SUFFIX}%",),
        ).fetchone() == (1,)  # no leftover _new index, none on the other slot


def test_similar_videos_gets_its_own_probes_and_the_index_is_on_the_model_dims(
    world: World,
) -> None:
    """recommend_videos and similar_videos are tuned by their own rules (the same number here,
    where both reach lists; 42 and 63 at the benchmark's 107 lists). The index covers the
    model's 32 dimensions of the vector(256) column and the functions order by exactly its
    expression; a model of another dimension re-creates both, in the publish's transaction."""
    publish(world.wh, world, "d1", seed=23)
    with world.connect() as con:
        assert (ivfflat_probes(con, 107), similar_probes(con, 107)) == (42, 63)
        assert similar_probes(con, 2000) > ivfflat_probes(con, 2000) > 10
        lists = ivfflat_lists(con, N_VIDEOS)
        assert probes_by_function(con) == {
            "recommend_videos": f"ivfflat.probes={ivfflat_probes(con, lists)}",
            "similar_videos": f"ivfflat.probes={similar_probes(con, lists)}",
        }
        assert_index_matches_functions(con, MODEL_DIM)
    try:
        v, u = publish(world.wh, world, "d2", seed=24, dim=12)
        with world.connect() as con:
            assert_index_matches_functions(con, 12)
            con.execute("set enable_seqscan = off")
            got = [
                r[0]
                for r in con.execute(
                    "select video_id::text from public.recommend_videos(%s, 5)",
                    (world.user_ids[3],),
                )
            ]
        assert got == exact_top(world, v, u, world.user_ids[3], 5)
        world.wh.ensure_app_schema()  # the migrations keep the published dimension
        with world.connect() as con:
            assert_index_matches_functions(con, 12)
    finally:
        publish(world.wh, world, "d3", seed=25)
    with world.connect() as con:
        assert_index_matches_functions(con, MODEL_DIM)
    # an index on the whole column (as built before this rule): migrate rebuilds it to match
    with world.connect() as con:
        con.execute(f"drop index public.{ann_index(con)}")
        con.execute(
            f"create index {ann_index(con)} on public.{published_slot(con)} "
            "using ivfflat (embedding vector_cosine_ops) with (lists = 10)"
        )
    world.wh.ensure_app_schema()
    with world.connect() as con:
        assert_index_matches_functions(con, MODEL_DIM)


def test_exclude_keeps_the_ann_index_in_every_serving_function(world: World) -> None:
    """p_exclude is one more filter on the index scan (iterative scans return rows until k
    survive): the plans of all three functions still scan the ANN index with 30 excluded, and
    recommend_videos answers the exact top k without them."""
    v, u = publish(world.wh, world, "x1", seed=26)
    user = world.user_ids[5]
    with world.connect() as con:
        con.execute("set enable_seqscan = off")  # 240 rows: the planner would rather sort
        shown = [r[0] for r in con.execute(
            "select video_id::text from public.recommend_videos(%s, 30)", (user,)
        )]  # fmt: skip
        calls = {
            "public.recommend_videos(text, integer, uuid[])": (user, 10, shown),
            "public.similar_videos(uuid, integer, uuid[])": (world.video_ids[3], 10, shown),
            "public.recommend_for_likes(uuid[], integer, uuid[])": (
                world.video_ids[6:9], 10, shown),
        }  # fmt: skip
        for signature, args in calls.items():
            plan = explain_function(con, signature, args)
            assert f"Index Scan using {ann_index(con)}" in plan, (signature, plan)
            assert "<> ALL" in plan, plan  # the exclusion is a filter on that scan
        got = [r[0] for r in con.execute(
            "select video_id::text from public.recommend_videos(%s, 10, %s::uuid[])",
            (user, shown),
        )]  # fmt: skip
        con.execute("reset enable_seqscan")
    world.reviewed[user] |= set(shown)
    try:
        assert got == exact_top(world, v, u, user, 10)
    finally:
        world.reviewed[user] -= set(shown)


def test_lists_follow_the_row_count(world: World) -> None:
    """12,345 video vectors: lists = 12 (rows / 1000), probes per the rule."""
    extra = [vid(i) for i in range(100_000, 100_000 + 12_345 - N_VIDEOS)]
    with world.connect() as con:
        con.execute(
            "insert into public.videos (id, product_url) select id, 'https://x/' || id "
            "from unnest(%s::uuid[]) as id",
            (extra,),
        )
    try:
        publish(world.wh, world, "big", seed=16, videos=world.video_ids + extra, dim=8)
        with world.connect() as con:
            assert index_info(con) == ("ivfflat", {"lists": "12"})
            assert function_probes(con) == {f"ivfflat.probes={ivfflat_probes(con, 12)}"}
    finally:
        publish(world.wh, world, "i3", seed=17)
        with world.connect() as con:
            con.execute("delete from public.videos where id = any(%s::uuid[])", (extra,))


def test_rerunning_the_migrations_keeps_the_index_and_its_probes(world: World) -> None:
    publish(world.wh, world, "i5", seed=20)
    with world.connect() as con:
        before = (state(con), index_info(con), function_probes(con))
        con.execute(
            "alter function public.recommend_videos(text, integer, uuid[]) set ivfflat.probes = 1"
        )
    world.wh.ensure_app_schema()  # create or replace function resets SET clauses: retuned
    with world.connect() as con:
        assert (state(con), index_info(con), function_probes(con)) == before


def test_hnsw_index_method(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTOR_INDEX_METHOD", "hnsw")
    wh = PostgresWarehouse.from_target(world.pg.target(DB))
    try:
        publish(wh, world, "h1", seed=18)
        with world.connect() as con:
            amname, options = index_info(con)
            assert amname == "hnsw" and options == {"m": "16", "ef_construction": "64"}
            config = con.execute(
                "select proconfig from pg_proc where proname = 'recommend_videos'"
            ).fetchone()[0]
            assert f"hnsw.ef_search={hnsw_ef_search(con)}" in config
        assert wh.recommend(world.user_ids[1], 5)
    finally:
        wh.close()
        publish(world.wh, world, "i4", seed=19)


def test_dbt_macro_rebuilds_the_index_the_same_way(
    world: World,
    dbt_scratch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGDATABASE", DB)  # dbt renders profiles.yml from the environment
    target = world.pg.target(DB)
    with world.connect() as con:
        before = state(con)["index_oid"]
    run_dbt(
        target, "run-operation", "rebuild_vector_index", "--args",
        "{relation: public.video_embeddings, method: hnsw}", quiet=True,
    )  # fmt: skip
    with world.connect() as con:
        assert index_info(con)[0] == "hnsw"
    run_dbt(
        target, "run-operation", "rebuild_vector_index", "--args",
        "{relation: public.video_embeddings}", quiet=True,
    )  # fmt: skip
    with world.connect() as con:
        s = state(con)
        assert s["index_oid"] != before
        assert index_info(con) == ("ivfflat", {"lists": str(ivfflat_lists(con, s["videos"]))})
        lists = ivfflat_lists(con, s["videos"])
        assert probes_by_function(con) == {
            "recommend_videos": f"ivfflat.probes={ivfflat_probes(con, lists)}",
            "similar_videos": f"ivfflat.probes={similar_probes(con, lists)}",
        }
        assert_index_matches_functions(con, MODEL_DIM)
    assert world.wh.recommend(world.user_ids[2], 3)
