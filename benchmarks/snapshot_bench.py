"""The snapshot flow at production scale: pg_dump a "production", pg_restore into a work copy.

    .venv/bin/python -m benchmarks.snapshot_bench --videos 107000 --users 109000 --reviewed 1000000

Starts two PostgreSQL + pgvector servers (`tests.support.pg_server.start_server`), migrates the
"production" one and fills its app tables with random unit vectors (vector(256)) and reviewed
pairs, then runs `trainer.jobs.snapshot.snapshot` as the weekly workflow does (through a read-only
role) and prints the time, the dump's size and the rows restored per second.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import psycopg

from tests.support.pg_server import pg_bin_dir, start_server
from trainer.backends.postgres import EMBEDDING_TABLES, PostgresWarehouse, connection_settings
from trainer.backends.profiles import load_target
from trainer.jobs.snapshot import snapshot

READER = "snapshot_reader"


def fill_production(conninfo: str, videos: int, users: int, reviewed: int, seed: int) -> None:
    """Migrated app tables with random published vectors, as after a weekly publish."""
    os.environ["PROD_DATABASE_URL"] = conninfo
    with PostgresWarehouse(connection_settings(load_target("prod"))) as warehouse:
        warehouse.ensure_app_schema()
        warehouse.execute(
            "insert into public.videos (id, product_url) select gen_random_uuid(), "
            f"'https://example.com/v/' || g from generate_series(1, {int(videos)}) as g"
        )
        ids = warehouse.read("select cast(id as varchar) as id from public.videos order by id")
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((videos + users, 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        user_ids = [f"user{u:07d}" for u in range(users)]
        warehouse.publish_embeddings(
            (ids["id"].to_list(), vectors[:videos]), (user_ids, vectors[videos:]), "bench"
        )
    with psycopg.connect(conninfo, autocommit=True) as con:
        con.execute(
            "with v as (select array_agg(id) as ids from public.videos), "
            "pairs as (select 'user' || lpad(floor(random() * %s)::int::text, 7, '0') as u, "
            "v.ids[1 + floor(random() * %s)::int] as id from generate_series(1, %s), v) "
            "insert into public.reviewed_videos (user_id, video_ids) "
            "select u, array_agg(distinct id order by id) from pairs group by u",
            (users, videos, reviewed),
        )
        con.execute(
            f"create role {READER} login bypassrls; grant usage on schema public to {READER};"
            f"grant select on all tables in schema public to {READER};"
            f"alter role {READER} set default_transaction_read_only = on; analyze"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=107_000)
    parser.add_argument("--users", type=int, default=109_000)
    parser.add_argument("--reviewed", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with start_server("bench-prod-") as prod, start_server("bench-work-") as work:
        os.environ["PG_BIN_DIR"] = str(pg_bin_dir())
        prod_db, work_db = prod.database("prod", False), work.database("work", False)
        started = time.perf_counter()
        fill_production(prod_db, args.videos, args.users, args.reviewed, args.seed)
        print(f"filled production in {time.perf_counter() - started:.1f} s", flush=True)
        os.environ["PROD_READONLY_DATABASE_URL"] = prod.conninfo("prod", user=READER)
        os.environ["DATABASE_URL"] = work_db
        started = time.perf_counter()
        result = snapshot(load_target("prod_readonly"), load_target("postgres"), progress=False)
        seconds = time.perf_counter() - started
        with psycopg.connect(prod_db, autocommit=True) as con:
            size = con.execute(
                "select pg_size_pretty(sum(pg_total_relation_size(c.oid))) from pg_class as c "
                "where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'"
            ).fetchone()[0]
    # the embedding views repeat their slots' rows: count the slots only
    rows = sum(n for table, n in result.tables.items() if table not in EMBEDDING_TABLES)
    for table, n in result.tables.items():
        print(f"  {table}: {n:,} rows")
    print(f"snapshot of {size} of tables: {seconds:.1f} s, {rows / seconds:,.0f} rows/s")
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in result.seconds.items())
    print(f"  {parts}; dump file {result.dump_bytes / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
