"""The ai-recommend Edge Function's latency at scale, beside the SQL functions it calls.

    .venv/bin/python -m benchmarks.edge_bench [--videos 100000] [--users 100000] [--calls 200]

Starts its own PostgreSQL + pgvector (tests.support.pg_server), registers --videos videos,
publishes random unit vectors for them and --users reviewers (ANN index as a publish builds
it), gives 200 app users five likes each in an RLS-guarded likes table, then times, per mode,
--calls requests through the function (Deno serving the real handler, supabase-js, the local
PostgREST + Auth stand-in of tests/support/fake_postgrest.py, every call as the caller's role)
and the same SQL function called directly as that role on one connection. Prints p50 / p95 ms
side by side. The stand-in opens a connection per request (real PostgREST pools them), so the
function's figures carry that connection cost; the direct column is the database's own time.
Random vectors: latency, not quality.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import psycopg

from benchmarks.postgres_probes import percentile
from tests.support.edge_function import call, served_function
from tests.support.fake_postgrest import fake_supabase
from tests.support.pg_server import start_server
from trainer.backends.postgres import PostgresWarehouse

APP_USERS = 200


def _setup(server, videos: int, users: int, dim: int = 64) -> tuple[list[str], list[str]]:
    server.database("edgebench")
    wh = PostgresWarehouse.from_target(server.target("edgebench"))
    wh.ensure_app_schema()
    with server.connect("edgebench") as con:
        video_ids = [str(r[0]) for r in con.execute(
            "insert into public.videos (id, product_url) select md5('v' || i)::uuid, "
            "'https://www.dmm.co.jp/-/detail/=/cid=v' || i from generate_series(1, %s) as i "
            "returning id", (videos,)).fetchall()]  # fmt: skip
    user_ids = [f"u{i:07d}" for i in range(users)]
    rng = np.random.default_rng(0)
    vectors = {n: rng.normal(size=(n, dim)).astype(np.float32) for n in (videos, users)}
    started = time.perf_counter()
    keys = [f"app:{u}" for u in user_ids]  # public.my_user_id() of the caller with sub u
    wh.publish_embeddings((video_ids, vectors[videos]), (keys, vectors[users]), "bench_v1")
    print(f"published {videos:,} + {users:,} vectors in {time.perf_counter() - started:.1f} s")
    wh.close()
    with server.connect("edgebench") as con:
        con.execute("create table public.app_likes (user_id uuid not null, video_id uuid not null)")
        con.execute(
            "insert into public.app_likes select md5('a' || a)::uuid, md5('v' || (a * 37 + l) "
            "%% %s + 1)::uuid from generate_series(1, %s) as a, generate_series(1, 5) as l",
            (videos, APP_USERS),
        )
        con.execute("create index on public.app_likes (user_id)")
        con.execute("alter table public.app_likes enable row level security")
        con.execute("grant select on public.app_likes to authenticated")
        con.execute(
            "create policy own on public.app_likes for select to authenticated using "
            "(user_id::text = current_setting('request.jwt.claims', true)::jsonb ->> 'sub')"
        )
        con.execute("vacuum analyze")
    return video_ids, user_ids


def _direct(con: psycopg.Connection, role: str, sub: str | None, sql: str, args: tuple) -> float:
    claims = json.dumps({"role": role, **({"sub": sub} if sub else {})})
    started = time.perf_counter()
    with con.transaction():
        con.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        con.execute(f"set local role {role}")
        con.execute(sql, args).fetchall()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.edge_bench")
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    with start_server("edgebench-") as server:
        os.environ.update(PGHOST=server.host, PGPORT=server.port, PGUSER=server.user,
                          PGPASSWORD=server.password, PGSSLMODE="disable")  # fmt: skip
        video_ids, user_ids = _setup(server, args.videos, args.users)
        reviewers = [user_ids[i] for i in rng.choice(len(user_ids), args.calls)]
        with server.connect("edgebench") as con:
            likers = [str(r[0]) for r in con.execute(
                "select distinct user_id from public.app_likes").fetchall()]  # fmt: skip
        tokens = {f"jwt-{u}": u for u in reviewers + likers}
        picks = [video_ids[i] for i in rng.choice(len(video_ids), args.calls)]
        cases = {  # mode -> (body and token per call, the SQL call it stands for)
            "me (vector)": [({"mode": "me"}, f"jwt-{u}", "authenticated", u,
                             "select * from public.recommend_for_me(10)", ()) for u in reviewers],
            "me (likes)": [({"mode": "me"}, f"jwt-{u}", "authenticated", u,
                            "select * from public.recommend_for_likes((select array_agg(video_id) "
                            "from public.app_likes where user_id::text = %s), 10)", (u,))
                           for u in (likers * (args.calls // len(likers) + 1))[: args.calls]],
            "likes": [({"mode": "likes", "video_ids": picks[i : i + 3]}, None, "anon", None,
                       "select * from public.recommend_for_likes(%s::uuid[], 10)",
                       (picks[i : i + 3],)) for i in range(args.calls)],
            "similar": [({"mode": "similar", "video_id": v}, None, "anon", None,
                         "select * from public.similar_videos(%s, 10)", (v,)) for v in picks],
        }  # fmt: skip
        # what the app already showed: the 50 best of each call's answer, so the index must
        # search past them (p_exclude in the same WHERE as the other exclusions)
        with server.connect("edgebench") as con:
            shown = {
                u: [
                    str(r[0])
                    for r in con.execute(
                        "select video_id from public.recommend_videos(%s, 50)", (f"app:{u}",)
                    )
                ]
                for u in reviewers
            }
            shown_likes = [
                [
                    str(r[0])
                    for r in con.execute(
                        "select video_id from public.recommend_for_likes(%s::uuid[], 50)",
                        (picks[i : i + 3],),
                    )
                ]
                for i in range(args.calls)
            ]
        cases["me (vector), 50 excluded"] = [
            (
                {"mode": "me", "exclude": shown[u]},
                f"jwt-{u}",
                "authenticated",
                u,
                "select * from public.recommend_for_me(10, %s::uuid[])",
                (shown[u],),
            )
            for u in reviewers
        ]
        cases["likes, 50 excluded"] = [
            ({"mode": "likes", "video_ids": picks[i : i + 3], "exclude": shown_likes[i]}, None,
             "anon", None, "select * from public.recommend_for_likes(%s::uuid[], 10, %s::uuid[])",
             (picks[i : i + 3], shown_likes[i])) for i in range(args.calls)]  # fmt: skip
        rows = []
        with (
            fake_supabase(server.conninfo("edgebench"), tokens) as project,
            served_function(project, RECOMMEND_LIKES_TABLE="app_likes") as url,
            server.connect("edgebench") as con,
        ):
            for mode, calls in cases.items():
                through, direct = [], []
                for body, token, role, sub, sql, sql_args in calls:
                    started = time.perf_counter()
                    status, answer = call(url, body, *([token] if token else []))
                    through.append((time.perf_counter() - started) * 1000)
                    assert status == 200 and len(answer["results"]) == 10, (mode, status, answer)
                    direct.append(_direct(con, role, sub, sql, sql_args))
                rows.append((mode, through, direct, answer["source"]))
    print(f"\n{args.videos:,} videos, {args.users:,} users, {args.calls} calls per mode (ms)")
    print(f"{'mode':<26} {'source':<8} {'function p50':>12} {'p95':>8} {'SQL p50':>9} {'p95':>8}")
    for mode, through, direct, source in rows:
        print(f"{mode:<26} {source:<8} {statistics.median(through):>12.1f} "
              f"{percentile(through, 0.95):>8.1f} {statistics.median(direct):>9.2f} "
              f"{percentile(direct, 0.95):>8.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
