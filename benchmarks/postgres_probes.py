"""What the Postgres benchmark measures on the serving functions: latency, the plan
recommend_videos runs, and ANN recall@k against exact search (the same function with index scans
off), with a sweep over ivfflat probes and hnsw ef_search. Used by benchmarks/postgres_bench.py."""

from __future__ import annotations

import math
import re
import statistics
import time

import numpy as np
import psycopg
from psycopg import sql

from trainer.backends.postgres import (
    ANN_INDEX_SUFFIX,
    PostgresWarehouse,
    ivfflat_lists,
    ivfflat_probes,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def explain_recommend(con: psycopg.Connection, user_id: str, k: int) -> str:
    """The plan recommend_videos runs (its body, with its SET clauses, as a prepared statement)."""
    body, config = con.execute(
        "select prosrc, proconfig from pg_proc where oid = "
        "'public.recommend_videos(text, integer)'::regprocedure"
    ).fetchone()
    body = re.sub(r"\bp_user_id\b", "$1", body)
    body = re.sub(r"(?<![.\w])k\b", "$2::integer", body)
    with con.transaction():
        for item in config:
            name, value = item.split("=", 1)
            con.execute("select set_config(%s, %s, true)", (name, value.strip('"')))
        con.execute(f"prepare _rec(text, integer) as {body}")
        plan = con.execute(
            sql.SQL(
                "explain (analyze, costs off, timing off, summary on) execute _rec({}, {})"
            ).format(sql.Literal(user_id), sql.Literal(k))
        ).fetchall()
        con.execute("deallocate _rec")
    return "\n".join(row[0] for row in plan)


def latencies(con: psycopg.Connection, users: list[str], k: int) -> list[float]:
    for user in users[:10]:  # warm the cache and the plan
        con.execute("select * from public.recommend_videos(%s, %s)", (user, k)).fetchall()
    out = []
    for user in users:
        started = time.perf_counter()
        con.execute("select * from public.recommend_videos(%s, %s)", (user, k)).fetchall()
        out.append((time.perf_counter() - started) * 1000)
    return out


def run(con: psycopg.Connection, function: str, args: tuple, k: int) -> list[str]:
    rows = con.execute(f"select video_id::text from public.{function}(%s, %s)", (*args, k))
    return [row[0] for row in rows]


def recall(
    con: psycopg.Connection, calls: list[tuple[str, tuple]], k: int, exact_cache: dict
) -> float:
    """Mean |ANN top-k ∩ exact top-k| / |exact top-k| over the calls (function, args). Exact:
    the same function with index scans off (a full scan and sort), computed once per call and
    kept in `exact_cache` (the caller's, so sweeps reuse it)."""
    missing = [c for c in calls if (*c, k) not in exact_cache]
    if missing:
        with con.transaction():
            con.execute("set local enable_indexscan = off")
            con.execute("set local enable_bitmapscan = off")
            for function, args in missing:
                exact_cache[(function, args, k)] = run(con, function, args, k)
    hits = []
    for function, args in calls:
        exact = exact_cache[(function, args, k)]
        ann = run(con, function, args, k)
        hits.append(len(set(ann) & set(exact)) / max(len(exact), 1))
    return float(np.mean(hits))


def sweep(pg, data, items, users, sample, videos, k, r) -> None:
    """Recall@k and latency of both functions for a range of probes, then for hnsw."""
    con = pg.con
    exact: dict = {}
    functions = ("recommend_videos(text, integer)", "similar_videos(uuid, integer)")
    calls = {
        "recommend": [("recommend_videos", (u,)) for u in sample],
        "similar": [("similar_videos", (v,)) for v in videos],
    }
    lists = ivfflat_lists(con, data.n_items)
    root = lists**0.5
    for probes in sorted({10, *(math.ceil(f * root) for f in (1, 2, 3, 4, 5, 6))}):
        probes = min(max(probes, 1), lists)
        for f in functions:
            con.execute(f"alter function public.{f} set ivfflat.probes = {probes}")
        sweep_point(con, calls, sample, k, r, f"ivfflat lists {lists} probes {probes}", exact)
    pg.index_method = "hnsw"
    started = time.perf_counter()
    pg.publish_embeddings((data.video_ids, items), (data.user_ids, users), "bench_hnsw")
    r["hnsw: publish incl. index build s"] = round(time.perf_counter() - started, 2)
    for ef in (40, 100, 200, 400):
        for f in functions:
            con.execute(f"alter function public.{f} set hnsw.ef_search = {ef}")
        sweep_point(con, calls, sample, k, r, f"hnsw ef_search {ef}", exact)


def sweep_point(con, calls, sample, k, r, label, exact: dict) -> None:
    lat = latencies(con, sample, k)
    rec = recall(con, calls["recommend"], k, exact)
    sim = recall(con, calls["similar"], k, exact)
    r[f"sweep {label}"] = (
        f"recall@{k} recommend {rec:.3f} similar {sim:.3f}; recommend p50 "
        f"{statistics.median(lat):.1f} ms p95 {percentile(lat, 0.95):.1f} ms"
    )


def _latency(r: dict, label: str, lat: list[float]) -> None:
    r[f"{label} p50 ms"] = round(statistics.median(lat), 2)
    r[f"{label} p95 ms"] = round(percentile(lat, 0.95), 2)


def measure_serving(args, pg: PostgresWarehouse, data, users, items, clock) -> str:
    """Latency of recommend_videos (and popular), ANN recall against exact search; the plan."""
    r = clock.results
    con = pg.con
    lists = ivfflat_lists(con, data.n_items)
    r["ivfflat lists/probes recommend/probes similar"] = (
        f"{lists}/{ivfflat_probes(con, lists)}/{ivfflat_probes(con, lists, 'similar_videos')}"
    )
    rng = np.random.default_rng(1)
    sample = [data.user_ids[i] for i in rng.choice(data.n_users, args.users, replace=False)]
    cold = [
        row[0]
        for row in con.execute(
            "select distinct i.user_id from recsys.interactions i where not exists "
            "(select 1 from public.user_embeddings u where u.user_id = i.user_id) limit 20"
        )
    ]
    has_index = con.execute(
        "select count(*) from pg_indexes where schemaname = 'recsys' and tablename = 'interactions'"
    ).fetchone()[0]
    if not has_index:
        _latency(r, "recommend (no index on interactions)", latencies(con, sample, args.k))
        with clock("create index on recsys.interactions (user_id)"):
            con.execute("create index on recsys.interactions (user_id)")
            con.execute("analyze recsys.interactions")
    _latency(r, "recommend", latencies(con, sample, args.k))
    if cold:
        _latency(r, "recommend, user without a vector (popular)", latencies(con, cold, args.k))
    plan = explain_recommend(con, sample[0], args.k)
    exact: dict = {}  # exact top-k per call, shared by the recall figures
    r["recommend uses the ANN index"] = str(ANN_INDEX_SUFFIX in plan)
    with clock("recall@10 (exact search for comparison)"):
        r["recall@10 recommend_videos"] = round(
            recall(con, [("recommend_videos", (u,)) for u in sample], args.k, exact), 4
        )
        videos = [data.video_ids[i] for i in rng.choice(data.n_items, args.users, replace=False)]
        r["recall@10 similar_videos"] = round(
            recall(con, [("similar_videos", (v,)) for v in videos], args.k, exact), 4
        )
    if args.sweep:
        sweep(pg, data, items, users, sample, videos, args.k, r)
    return plan
