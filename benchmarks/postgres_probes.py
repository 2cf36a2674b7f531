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

EXCLUDED = 50  # ids excluded per call in the "with exclude" figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def explain_function(con: psycopg.Connection, signature: str, args: tuple) -> str:
    """The plan a serving function runs for `args` (its body, with its SET clauses, as a prepared
    statement: the planner sees the function's own statement, ANN index scan or not)."""
    body, config, names, types = con.execute(
        "select prosrc, proconfig, proargnames[1:pronargs], "
        "array(select format_type(t, null) from unnest(proargtypes) with ordinality as a(t, n) "
        "order by n) from pg_proc where oid = %s::regprocedure",
        (signature,),
    ).fetchone()
    for i, (name, type_) in enumerate(zip(names, types, strict=True), 1):
        body = re.sub(rf"(?<![.\w]){name}\b", f"${i}::{type_}", body)
    values = sql.SQL(", ").join(
        sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t))
        for v, t in zip(args, types, strict=True)
    )
    with con.transaction():
        for item in config:
            name, value = item.split("=", 1)
            con.execute("select set_config(%s, %s, true)", (name, value.strip('"')))
        con.execute(f"prepare _explained({', '.join(types)}) as {body}")
        plan = con.execute(
            sql.SQL(
                "explain (analyze, costs off, timing off, summary on) execute _explained({})"
            ).format(values)
        ).fetchall()
        con.execute("deallocate _explained")
    return "\n".join(row[0] for row in plan)


def explain_recommend(
    con: psycopg.Connection, user_id: str, k: int, exclude: list[str] | None = None
) -> str:
    """The plan recommend_videos runs for one user (optionally with p_exclude)."""
    return explain_function(
        con, "public.recommend_videos(text, integer, uuid[])", (user_id, k, exclude)
    )


def latencies(
    con: psycopg.Connection,
    users: list[str],
    k: int,
    exclude: dict[str, list[str]] | None = None,
) -> list[float]:
    """recommend_videos per user, in ms; `exclude` (per user) passed as p_exclude."""
    return call_latencies(con, "recommend_videos", [(u,) for u in users], k, exclude)


def call_latencies(
    con: psycopg.Connection,
    function: str,
    calls: list[tuple],
    k: int,
    exclude: dict | None = None,
    rows: list[int] | None = None,
) -> list[float]:
    """One serving function per call (its leading arguments), in ms; `exclude` maps a call's
    first argument to its p_exclude; `rows` (when given) collects each call's row count."""
    cast = "::uuid[]" if function == "recommend_for_likes" else ""
    statement = f"select * from public.{function}(%s{cast}, %s, %s::uuid[])"

    def params(args: tuple) -> tuple:
        key = tuple(args[0]) if isinstance(args[0], list) else args[0]
        return (*args, k, (exclude or {}).get(key))

    for args in calls[:10]:  # warm the cache and the plan
        con.execute(statement, params(args)).fetchall()
    out = []
    for args in calls:
        started = time.perf_counter()
        got = con.execute(statement, params(args)).fetchall()
        out.append((time.perf_counter() - started) * 1000)
        if rows is not None:
            rows.append(len(got))
    return out


def top_answers(
    con: psycopg.Connection, function: str, calls: list[tuple], n: int
) -> dict[object, list[str]]:
    """The first n ids each call answers without exclusions: what an app would have shown
    already, the p_exclude of the "with exclude" figures."""
    cast = "::uuid[]" if function == "recommend_for_likes" else ""
    out: dict[object, list[str]] = {}
    for args in calls:
        rows = con.execute(
            f"select video_id::text from public.{function}(%s{cast}, %s)", (*args, n)
        ).fetchall()
        key = tuple(args[0]) if isinstance(args[0], list) else args[0]
        out[key] = [row[0] for row in rows]
    return out


def _side_by_side(r: dict, label: str, plain: list[float], excluded: list[float], n: int) -> None:
    r[f"{label} p50/p95 ms: plain | {n} excluded"] = (
        f"{statistics.median(plain):.2f} / {percentile(plain, 0.95):.2f} | "
        f"{statistics.median(excluded):.2f} / {percentile(excluded, 0.95):.2f}"
    )


def measure_exclude(con: psycopg.Connection, data, sample: list[str], k: int, r: dict) -> str:
    """recommend_videos and recommend_for_likes p50/p95 beside the same calls with p_exclude:
    EXCLUDED ids drawn from each call's own unexcluded top answers (the app's already shown),
    the worst case for an index scan that must skip them. Returns recommend_videos' plan with
    the exclusions (to check the ANN index is still used)."""
    n = EXCLUDED
    users = [(u,) for u in sample]
    shown = top_answers(con, "recommend_videos", users, n)
    plain = call_latencies(con, "recommend_videos", users, k)
    counts: list[int] = []
    excluded = call_latencies(con, "recommend_videos", users, k, shown, counts)
    _side_by_side(r, "recommend_videos", plain, excluded, n)
    rng = np.random.default_rng(2)
    likes = [
        ([data.video_ids[i] for i in rng.choice(data.n_items, 5, replace=False)],) for _ in sample
    ]
    shown_likes = top_answers(con, "recommend_for_likes", likes, n)
    plain = call_latencies(con, "recommend_for_likes", likes, k)
    excluded = call_latencies(con, "recommend_for_likes", likes, k, shown_likes, counts)
    _side_by_side(r, "recommend_for_likes (5 likes)", plain, excluded, n)
    r[f"calls with {n} excluded that returned fewer than k rows"] = sum(c < k for c in counts)
    plan = explain_recommend(con, sample[0], k, shown[sample[0]])
    r[f"recommend with {n} excluded uses the ANN index"] = str(ANN_INDEX_SUFFIX in plan)
    return plan


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
    functions = ("recommend_videos(text, integer, uuid[])", "similar_videos(uuid, integer, uuid[])")
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
    with clock(f"latency with {EXCLUDED} excluded"):
        measure_exclude(con, data, sample, args.k, r)
    if args.sweep:
        sweep(pg, data, items, users, sample, videos, args.k, r)
    return plan
