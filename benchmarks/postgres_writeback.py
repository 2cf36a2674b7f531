"""What the Postgres benchmark reports about the embedding write-back: the publish's steps as
parts of its time, and the bound (a binary COPY of the same vectors into a fresh table with only
a primary key). Used by benchmarks/postgres_bench.py."""

from __future__ import annotations

import time

import numpy as np

from trainer.backends.postgres import PostgresWarehouse, binary_copy_blocks


def write_back_parts(r, label, steps, started, total, vectors) -> int:
    """The write-back of one publish, step by step (publish_observer's marks); its rate."""
    names = {
        "staged": "lock, checks (retry: + COPY to staging)",
        "upserted:video_embeddings": "both slots filled: binary COPY, primary key, analyze; "
        "two connections (retry: video upsert)",
        "upserted:user_embeddings": "(retry: user upsert)",
        "upserted": "reviewed_videos + popular_videos refresh",
        "indexed": "ANN index build",
        "swapped": "foreign key, views swapped, old slots emptied (retry: index swapped), retune",
    }
    at = started
    for step, when in sorted(steps.items(), key=lambda item: item[1]):
        r[f"{label}: {names[step]} s"] = round(when - at, 2)
        at = when
    r[f"{label}: commit s"] = round(total - (steps["swapped"] - started), 2)
    apart = (steps["upserted"] - steps["upserted:user_embeddings"]) + (
        steps["indexed"] - steps["upserted"]
    )
    seconds = total - apart
    r[f"{label}: EMBEDDING WRITE-BACK s (all but the serving tables and the ANN index)"] = round(
        seconds, 2
    )
    rate = round(vectors / seconds)
    r[f"{label}: EMBEDDING WRITE-BACK vectors/s"] = rate
    r[f"{label}: total s (incl. serving tables, index, commit)"] = round(total, 2)
    return rate


def raw_copy_rate(pg: PostgresWarehouse, ids: list[str], items: np.ndarray) -> int:
    """The bound: binary COPY of the video vectors into a fresh table with only a primary key."""
    con = pg.con
    con.execute(
        "create table public._bench_raw_copy (video_id uuid primary key, "
        "embedding vector(256) not null, model_version text not null, "
        "updated_at timestamptz not null)"
    )
    try:
        started = time.perf_counter()
        with (
            con.cursor() as cur,
            cur.copy("copy public._bench_raw_copy from stdin (format binary)") as copy,
        ):
            suffix = (b"raw", (0).to_bytes(8, "big"))
            for block in binary_copy_blocks(ids, items, True, suffix, dim=256):
                copy.write(block)
        return round(len(ids) / (time.perf_counter() - started))
    finally:
        con.execute("drop table public._bench_raw_copy")
