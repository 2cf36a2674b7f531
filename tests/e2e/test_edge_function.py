"""The ai-recommend Edge Function end to end: the real Deno handler and supabase-js client,
a local stand-in for PostgREST and Auth (tests/support/fake_postgrest.py) and the suite's real
PostgreSQL + pgvector, every call as the caller's role under migration 004's grants and an app
likes table with its own row level security."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.edge_function import call, served_function
from tests.support.fake_postgrest import fake_supabase
from tests.support.pg_server import PgServer
from tests.support.serving_world import World, make_world, publish

LIKER = "aaaaaaaa-0000-4000-8000-000000000001"  # an app user (not a reviewer) with likes
STRANGER = "aaaaaaaa-0000-4000-8000-000000000002"  # an app user with no likes


@pytest.fixture(scope="module")
def world(pg_env: PgServer) -> Iterator[World]:
    for world in make_world(pg_env, "edge_tests"):
        publish(world.wh, world, "edge1", seed=7)
        with world.connect() as con:  # the app's likes: each user reads only their own
            con.execute(
                "create table public.app_likes (user_id uuid not null, video_id uuid not null, "
                "created_at timestamptz not null default now())"
            )
            con.execute(
                "insert into public.app_likes (user_id, video_id) select %s, unnest(%s::uuid[])",
                (LIKER, world.video_ids[10:13]),
            )
            con.execute("alter table public.app_likes enable row level security")
            con.execute("grant select on public.app_likes to authenticated")
            con.execute(
                "create policy own_likes on public.app_likes for select to authenticated using "
                "(user_id::text = current_setting('request.jwt.claims', true)::jsonb ->> 'sub')"
            )
        yield world


@pytest.fixture(scope="module")
def function_url(world: World) -> Iterator[str]:
    """The function served by Deno against the stand-in project; yields its URL."""
    users = {"jwt-reviewer": world.user_ids[2], "jwt-liker": LIKER, "jwt-stranger": STRANGER}
    with (
        fake_supabase(world.pg.conninfo(world.db), users) as project,
        served_function(
            project, RECOMMEND_LIKES_TABLE="app_likes", RECOMMEND_LIKES_ORDER_COLUMN="created_at"
        ) as url,
    ):
        yield url


def direct(world: World, statement: str, params: tuple) -> list[str]:
    with world.connect() as con:
        return [str(r[0]) for r in con.execute(statement, params).fetchall()]


def ids(body: dict) -> list[str]:
    return [r["video_id"] for r in body["results"]]


def test_me_uses_the_callers_vector_then_their_likes_then_the_popular_list(
    world: World, function_url: str
) -> None:
    status, body = call(function_url, {"mode": "me", "k": 5}, "jwt-reviewer")
    assert (status, body["source"], body["model_version"]) == (200, "vector", "edge1")
    assert ids(body) == direct(world, "select video_id from public.recommend_videos(%s, 5)",
                               (world.user_ids[2],))  # fmt: skip
    status, body = call(function_url, {"mode": "me", "k": 5}, "jwt-liker")
    assert (status, body["source"], body["model_version"]) == (200, "likes", "edge1")
    liked = world.video_ids[10:13]
    assert ids(body) == direct(
        world, "select video_id from public.recommend_for_likes(%s::uuid[], 5)", (liked,)
    )
    # another user's likes stay behind their RLS: the stranger gets the popular list
    status, body = call(function_url, {"mode": "me", "k": 5}, "jwt-stranger")
    assert (status, body["source"]) == (200, "popular")
    assert ids(body) == direct(world, "select video_id from public.recommend_videos(null, 5)", ())


def test_anyone_gets_likes_and_similar_and_me_needs_a_signed_in_caller(
    world: World, function_url: str
) -> None:
    video, likes = world.video_ids[0], world.video_ids[5:8]
    status, body = call(function_url, {"mode": "similar", "video_id": video, "k": 4})
    assert status == 200 and body["model_version"] == "edge1"
    assert ids(body) == direct(world, "select video_id from public.similar_videos(%s, 4)", (video,))
    status, body = call(function_url, {"mode": "likes", "video_ids": likes, "k": 4})
    assert status == 200 and ids(body) == direct(
        world, "select video_id from public.recommend_for_likes(%s::uuid[], 4)", (likes,)
    )
    assert call(function_url, {"mode": "me"})[0] == 401  # the anon key is nobody
    assert call(function_url, {"mode": "me"}, "forged-token")[0] == 401
    status, body = call(function_url, {"mode": "similar", "video_id": "nope"})
    assert status == 400 and "uuid" in body["error"]
