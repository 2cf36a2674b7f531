"""The serving functions on a real Postgres + pgvector: recommend_videos against exact search,
popular videos for users without a vector, similar_videos, run records, reviewed_videos."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.pg_server import PgServer
from tests.support.serving_world import (
    World,
    exact_top,
    make_world,
    publish,
)
from trainer.errors import UserError

DB = "serving_tests"


@pytest.fixture(scope="module")
def world(pg_env: PgServer) -> Iterator[World]:
    yield from make_world(pg_env, DB)


# -- serving ----------------------------------------------------------------------------------
@pytest.mark.parametrize("force_index", [False, True])
def test_recommend_videos_excludes_what_the_user_reviewed(world: World, force_index: bool) -> None:
    v, u = publish(world.wh, world, "s1", seed=20)
    with world.connect() as con:
        if force_index:  # through the ivfflat index (probes >= lists here: exact)
            con.execute("set enable_seqscan = off")
        for user in world.user_ids[:10]:
            got = [
                r[0]
                for r in con.execute(
                    "select video_id::text from public.recommend_videos(%s, 10)", (user,)
                )
            ]
            assert not set(got) & world.reviewed[user]
            assert got == exact_top(world, v, u, user, 10)
    # and through the Python API
    top = world.wh.recommend(world.user_ids[0], 10)
    assert [r.video_id for r in top] == exact_top(world, v, u, world.user_ids[0], 10)
    assert all(r.product_url.startswith("https://") for r in top)
    assert top == sorted(top, key=lambda r: -r.score)


def test_a_user_without_an_embedding_gets_popular_videos(world: World) -> None:
    publish(world.wh, world, "s2", seed=21)
    popular = world.wh.read(
        "select cast(video_id as varchar) as video_id, count(*) as n from interactions "
        "where label and video_id not in "
        "(select video_id from interactions where user_id = 'app:cold_user') "
        "group by video_id order by n desc, video_id limit 5"
    )
    got = world.wh.recommend("app:cold_user", 5)
    assert [r.video_id for r in got] == popular["video_id"].to_list()
    assert [r.score for r in got] == [float(n) for n in popular["n"]]
    assert not {r.video_id for r in got} & world.reviewed["app:cold_user"]


def test_popular_videos_are_ranked_with_each_publish(world: World) -> None:
    subset = world.video_ids[:150]
    publish(world.wh, world, "p1", seed=25, videos=subset)
    expected = world.wh.read(
        "select cast(video_id as varchar) as video_id, count(*) as positives from interactions "
        f"where label and cast(video_id as text) in ({', '.join(map(repr, subset))}) "
        "group by video_id"
    ).sort("video_id")
    got = world.wh.read(
        "select cast(video_id as varchar) as video_id, positives, model_version from popular_videos"
    ).sort("video_id")
    assert got["video_id"].to_list() == expected["video_id"].to_list()
    assert got["positives"].to_list() == expected["positives"].to_list()
    assert set(got["model_version"]) == {"p1"}
    publish(world.wh, world, "p2", seed=26)
    liked = world.wh.read("select count(distinct video_id) as n from interactions where label")
    ranked = world.wh.read("select count(*) as n, min(model_version) as v from popular_videos")
    assert ranked.row(0) == (liked["n"][0], "p2")


def test_an_unknown_user_is_a_clear_error(world: World) -> None:
    with pytest.raises(UserError, match="unknown user id 'nobody'"):
        world.wh.recommend("nobody", 5)
    with pytest.raises(UserError, match="uuid"):
        world.wh.similar("not-a-uuid", 5)
    assert world.wh.similar(str(uuid.uuid4()), 5) == []  # a video without a vector


def test_similar_videos_excludes_the_video_itself(world: World) -> None:
    v, _ = publish(world.wh, world, "s3", seed=22)
    with world.connect() as con:
        rows = con.execute(
            "select video_id::text, score from public.similar_videos(%s, 7)", (world.video_ids[9],)
        ).fetchall()
    assert len(rows) == 7 and world.video_ids[9] not in {r[0] for r in rows}
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_record_run_upserts_json(world: World) -> None:
    import datetime as dt

    now = dt.datetime(2025, 1, 5, 19, 0, tzinfo=dt.UTC)
    world.wh.record_run(
        {"model_version": "r1", "started_at": now, "config": {"dim": 64}, "published": False}
    )
    world.wh.record_run(
        {"model_version": "r1", "started_at": now, "metrics": {"recall@10": [0.1, 0.2]},
         "published": True}
    )  # fmt: skip
    with world.connect() as con:
        row = con.execute(
            "select config, metrics, published, jsonb_typeof(metrics) from public.model_runs "
            "where model_version = 'r1'"
        ).fetchone()
    assert row == ({"dim": 64}, {"recall@10": [0.1, 0.2]}, True, "object")


def test_reviewed_videos_follow_the_marts_and_only_changed_reviewers_are_rewritten(
    world: World,
) -> None:
    def sets(con: psycopg.Connection) -> dict[str, tuple[set[str], int]]:
        return {
            u: ({str(v) for v in ids}, xmin)
            for u, ids, xmin in con.execute(
                "select user_id, video_ids, xmin::text::bigint from public.reviewed_videos"
            ).fetchall()
        }

    publish(world.wh, world, "r1", seed=11)
    with world.connect() as con:
        first = sets(con)
        assert {u: s for u, (s, _) in first.items()} == world.reviewed
        changed, gone = "app:user001", "app:user002"
        kept = next(iter(world.video_ids[100:]))
        con.execute(
            "insert into recsys.interactions values (%s, %s, 2, false, 0.4)", (changed, kept)
        )
        saved = con.execute(
            "delete from recsys.interactions where user_id = %s returning *", (gone,)
        ).fetchall()
    try:
        publish(world.wh, world, "r2", seed=12)
        with world.connect() as con:
            second = sets(con)
    finally:
        with world.connect() as con:
            con.execute(
                "delete from recsys.interactions where user_id = %s and video_id = %s "
                "and stars = 2 and not label",
                (changed, kept),
            )
            con.cursor().executemany(
                "insert into recsys.interactions values (%s, %s, %s, %s, %s)", saved
            )
    assert second[changed][0] == world.reviewed[changed] | {kept}
    assert gone not in second
    unchanged = set(first) - {changed, gone}
    assert {u: second[u] for u in unchanged} == {u: first[u] for u in unchanged}  # same xmin
    # and recommend_videos excludes the new review at once
    got = world.wh.recommend(changed, 20)
    assert kept not in {r.video_id for r in got}
