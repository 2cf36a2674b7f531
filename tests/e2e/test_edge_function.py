"""The ai-recommend Edge Function end to end: the real Deno handler and supabase-js client,
a local stand-in for PostgREST and Auth (tests/support/fake_postgrest.py) and the suite's real
PostgreSQL + pgvector, every call as the caller's role under migration 004's grants and an app
likes table with its own row level security."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.edge_function import call, served_function
from tests.support.fake_postgrest import fake_supabase
from tests.support.pg_server import PgServer
from tests.support.serving_world import World, jwt_sub, make_world, publish

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
    users = {
        "jwt-reviewer": jwt_sub(world.user_ids[2]),
        "jwt-liker": LIKER,
        "jwt-stranger": STRANGER,
    }
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


def test_exclude_is_passed_on_in_every_mode_the_popular_fallback_included(
    world: World, function_url: str
) -> None:
    """The app's already shown videos: the answer is the SQL function's with p_exclude, still k
    (`me` on each of its paths: compared with recommend_for_me as the same caller, or with
    recommend_for_likes on the caller's likes)."""
    video, likes = world.video_ids[0], world.video_ids[5:8]
    subs = {
        "jwt-reviewer": jwt_sub(world.user_ids[2]),
        "jwt-liker": LIKER,
        "jwt-stranger": STRANGER,
    }
    cases = [({"mode": "me"}, token) for token in subs] + [
        ({"mode": "similar", "video_id": video}, None),
        ({"mode": "likes", "video_ids": likes}, None),
    ]
    for body, token in cases:
        caller = (token,) if token else ()  # else the anon key
        status, plain = call(function_url, {**body, "k": 5}, *caller)
        shown = ids(plain)[:3]
        status, got = call(function_url, {**body, "k": 5, "exclude": shown}, *caller)
        assert status == 200 and got["source"] == plain["source"], body
        if body["mode"] == "similar":
            statement, args = "similar_videos(%s, 5, %s::uuid[])", (video,)
        elif body["mode"] == "likes" or plain["source"] == "likes":
            liked = likes if body["mode"] == "likes" else world.video_ids[10:13]
            statement, args = "recommend_for_likes(%s::uuid[], 5, %s::uuid[])", (liked,)
        else:
            statement, args = "recommend_for_me(5, %s::uuid[])", ()
        with world.connect() as con:
            if token is not None:
                claims = json.dumps({"sub": subs[token], "role": "authenticated"})
                con.execute("select set_config('request.jwt.claims', %s, false)", (claims,))
            expected = [
                str(r[0])
                for r in con.execute(f"select video_id from public.{statement}", (*args, shown))
            ]
        assert ids(got) == expected and len(expected) == 5, body
        assert not set(expected) & set(shown)
    status, got = call(function_url, {"mode": "similar", "video_id": video, "exclude": ["x"]})
    assert status == 400 and "exclude[0]" in got["error"]
