"""The embedded file's serving queries: what `recommend` and the app's macros answer.

Similarity is exact (array_cosine_distance over FLOAT[D] arrays): at the embedded scale a scan
is fast enough and needs no index to keep fresh. Each query follows the published layout
(trainer/ml/model.py), as Postgres's serving functions do (tests/backends/test_contract.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from trainer.backends.base import Recommendation, check_exclude, check_k, check_video_ids
from trainer.errors import UserError

# Users without a vector (reviewers with no positive in train) get the most-liked published
# videos they have not reviewed: popular_videos, ranked at publish from the video_popularity mart.
# Every query takes the caller's exclusions (check_exclude) as a uuid[] parameter.
_POPULAR_SQL = """
    select cast(p.video_id as varchar), videos.product_url, cast(p.positives as double) as score
    from popular_videos as p
    join videos on videos.id = p.video_id
    where not exists (
        select 1 from reviewed_videos as mine
        where mine.user_id = ? and list_contains(mine.video_ids, p.video_id))
        and not list_contains(cast(? as uuid[]), p.video_id)
    order by score desc, p.video_id
    limit ?"""

_USER_SQL = """
    select cast(v.video_id as varchar), videos.product_url,
           1 - array_cosine_distance(v.embedding, u.embedding) as score
    from video_embeddings as v
    join user_embeddings as u on u.user_id = ?
    join videos on videos.id = v.video_id
    where not exists (
        select 1 from reviewed_videos as r
        where r.user_id = u.user_id and list_contains(r.video_ids, v.video_id))
        and not list_contains(cast(? as uuid[]), v.video_id)
    order by score desc, v.video_id
    limit ?"""


def _listed(rows: list[tuple]) -> list[Recommendation]:
    return [Recommendation(str(r[0]), r[1], float(r[2])) for r in rows]


def recommend(
    con: duckdb.DuckDBPyConnection, user_id: str, k: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """Top k for a reviewer, what they reviewed (and `exclude`) left out; popular videos for a
    reviewer without a vector; an error for an id that is neither."""
    check_k(k)
    excluded = check_exclude(exclude)
    has_vector, has_reviews = con.execute(
        "select exists(select 1 from user_embeddings where user_id = ?), "
        "exists(select 1 from reviewed_videos where user_id = ?)",
        [user_id, user_id],
    ).fetchall()[0]
    if not has_vector and not has_reviews:
        raise UserError(f"unknown user id {user_id!r}: no embedding and no reviews")
    sql = _USER_SQL if has_vector else _POPULAR_SQL
    return _listed(con.execute(sql, [user_id, excluded, k]).fetchall())


def similar(
    con: duckdb.DuckDBPyConnection, video_id: str, k: int, dim: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """The model's order for someone whose one like is this video (user_vector_from_likes,
    as Postgres's similar_videos), not the cosine of two video vectors."""
    check_k(k)
    (video_id,) = check_video_ids([video_id])
    excluded = check_exclude(exclude)
    rows = con.execute(
        f"""
        with query as (
            select cast(user_vector_from_likes([cast(? as uuid)]) as float[{dim}]) as embedding
            where exists (select 1 from video_embeddings where video_id = cast(? as uuid))
        )
        select cast(v.video_id as varchar), videos.product_url,
               1 - array_cosine_distance(v.embedding, q.embedding) as score
        from video_embeddings as v
        cross join query as q
        join videos on videos.id = v.video_id
        where v.video_id <> cast(? as uuid) and not list_contains(cast(? as uuid[]), v.video_id)
        order by score desc, v.video_id
        limit ?""",
        [video_id, video_id, video_id, excluded, k],
    ).fetchall()
    return _listed(rows)


def recommend_for_likes(
    con: duckdb.DuckDBPyConnection, video_ids: list[str], k: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """The recommend_for_likes macro (sql/duckdb/app_schema.sql); no rows when none of the
    likes is published (the macro's mean of nothing is not a vector)."""
    check_k(k)
    likes = check_video_ids(video_ids)
    excluded = check_exclude(exclude)
    known = con.execute(
        "select count(*) from video_embeddings where list_contains(cast(? as uuid[]), video_id)",
        [likes],
    ).fetchone()[0]
    if not known:
        return []
    rows = con.execute(
        "select cast(video_id as varchar), product_url, score "
        "from recommend_for_likes(cast(? as uuid[]), ?, exclude := cast(? as uuid[])) "
        "where score is not null",
        [likes, k, excluded],
    ).fetchall()
    return _listed(rows)
