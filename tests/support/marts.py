"""Stand-ins for the dbt marts that serving reads, for backend tests that do not need a real
`dbt build` (the marts themselves are built for real in tests/dbt)."""

from __future__ import annotations

import psycopg

INTERACTION = tuple[str, str, int, bool, float]  # user_id, video_id, stars, label, weight


def create_postgres_marts(con: psycopg.Connection, rows: list[INTERACTION]) -> None:
    """recsys.interactions with `rows`, and recsys.video_popularity as a view over it, so a test
    that changes the interactions sees the popularity follow."""
    con.execute(
        "create table recsys.interactions (user_id text, video_id uuid, stars integer, "
        "label boolean, weight double precision)"
    )
    con.execute(
        "create view recsys.video_popularity as select video_id, count(*) as positives "
        "from recsys.interactions where label group by video_id"
    )
    with con.cursor() as cur:
        cur.executemany("insert into recsys.interactions values (%s, %s, %s, %s, %s)", rows)
