"""Serving's tables and queries: reviewed_videos, popular_videos, model_runs, recommend, similar.

Serving reads only the app tables in public (production holds no marts). A publish refreshes
reviewed_videos and popular_videos in its own transaction, from another database's marts when
given (ServingTables, the snapshot flow), else from this database's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql as psql
from psycopg.types.json import Jsonb

from trainer.backends.base import (
    Recommendation,
    ServingTables,
    check_exclude,
    check_k,
    check_video_ids,
)
from trainer.backends.postgres.connection import Transaction
from trainer.backends.postgres.copy_io import copy_arrow
from trainer.backends.postgres.layout import APP_SCHEMA
from trainer.errors import UserError


def refresh_serving(
    cur: psycopg.Cursor, serving: ServingTables | None, model_version: str, slot: str
) -> None:
    """reviewed_videos and popular_videos for the new vectors (in video `slot`), from
    `serving` or from this database's marts; left as they are when there is neither (a
    rollback on production).

    reviewed_videos changes by difference: each reviewer's sorted set is aggregated, then
    reviewers no longer present are deleted and only changed sets are written."""
    source = _stage_serving(cur, serving)
    if source is None:
        return
    target = f"{APP_SCHEMA}.reviewed_videos"
    cur.execute(
        "create temporary table _stage_reviewed_sets on commit drop as "
        "select s.user_id, array_agg(distinct s.video_id order by s.video_id) as video_ids "
        f"from {source} as s where s.video_id is not null group by s.user_id"
    )
    cur.execute("analyze _stage_reviewed_sets")
    cur.execute(
        f"delete from {target} as t where not exists "
        "(select 1 from _stage_reviewed_sets as s where s.user_id = t.user_id)"
    )
    cur.execute(
        f"insert into {target} as t (user_id, video_ids) "
        "select s.user_id, s.video_ids from _stage_reviewed_sets as s "
        "on conflict (user_id) do update set video_ids = excluded.video_ids "
        "where t.video_ids is distinct from excluded.video_ids"
    )
    _rank_popular(cur, model_version, slot)


def _stage_serving(cur: psycopg.Cursor, serving: ServingTables | None) -> str | None:
    """Temporary _stage_positives, and the relation that holds the reviewed pairs: the
    marts' interactions, or _stage_reviewed copied from `serving`. None without a source."""
    if serving is None:
        cur.execute(
            "select to_regclass('interactions') is not null, "
            "to_regclass('video_popularity') is not null"
        )
        marts, popularity = cur.fetchone()
        if not marts:
            return None
        if not popularity:
            raise UserError(
                "the marts have interactions but no video_popularity (built by a dbt project "
                "older than this trainer): run `dbt build` on this target, then publish again"
            )
        cur.execute(
            "create temporary table _stage_positives on commit drop as "
            "select video_id, positives from video_popularity"
        )
        cur.execute("analyze _stage_positives")
        return "interactions"
    cur.execute(
        "create temporary table _stage_reviewed (user_id text not null, "
        "video_id uuid not null) on commit drop;"
        "create temporary table _stage_positives (video_id uuid not null, "
        "positives bigint not null) on commit drop"
    )
    copy_arrow(cur, "_stage_reviewed", serving.reviewed.select(["user_id", "video_id"]))
    copy_arrow(cur, "_stage_positives", serving.positives.select(["video_id", "positives"]))
    cur.execute("analyze _stage_reviewed, _stage_positives")
    return "_stage_reviewed"


def _rank_popular(cur: psycopg.Cursor, model_version: str, slot: str) -> None:
    """public.popular_videos: the staged positives per video (_stage_serving), kept for
    published videos; written set-based like the re-publish upsert: delete videos no longer
    in, update changed rows in place (their video_id, so the foreign key to videos, does not
    change: no check per row; with the table's fillfactor 50 most are HOT updates, no index
    entries), insert new ones."""
    target = f"{APP_SCHEMA}.popular_videos"
    cur.execute(
        "create temporary table _ranked on commit drop as "
        "select c.video_id, c.positives from _stage_positives as c "
        f"where exists (select 1 from {APP_SCHEMA}.{slot} as e "
        "  where e.video_id = c.video_id)"
    )
    cur.execute("analyze _ranked")
    cur.execute(
        f"delete from {target} as p "
        "where not exists (select 1 from _ranked as r where r.video_id = p.video_id)"
    )
    cur.execute(
        f"update {target} as p set positives = r.positives, model_version = %(v)s "
        "from _ranked as r where r.video_id = p.video_id "
        "and (p.positives, p.model_version) is distinct from (r.positives, %(v)s)",
        {"v": model_version},
    )
    cur.execute(
        f"insert into {target} (video_id, positives, model_version) "
        "select r.video_id, r.positives, %(v)s from _ranked as r "
        "on conflict (video_id) do nothing",  # rows already there were updated above
        {"v": model_version},
    )


def record_run(tx: Transaction, run: dict[str, Any]) -> None:
    """Insert or update one model_runs row (dict/list values are stored as jsonb)."""
    if "model_version" not in run:
        raise ValueError("record_run needs run['model_version']")
    columns = list(run)
    values = [Jsonb(v) if isinstance(v, dict | list) else v for v in run.values()]
    updates = [
        psql.SQL("{} = excluded.{}").format(psql.Identifier(c), psql.Identifier(c))
        for c in columns
        if c != "model_version"
    ]
    statement = psql.SQL("insert into {} ({}) values ({}) on conflict (model_version) ").format(
        psql.Identifier(APP_SCHEMA, "model_runs"),
        psql.SQL(", ").join(map(psql.Identifier, columns)),
        psql.SQL(", ").join(psql.Placeholder() * len(columns)),
    )
    if updates:
        statement += psql.SQL("do update set {}").format(psql.SQL(", ").join(updates))
    else:
        statement += psql.SQL("do nothing")
    with tx() as cur:
        cur.execute(statement, values)


def run_row(tx: Transaction, model_version: str) -> dict[str, Any] | None:
    """The model_runs row of a version (jsonb arrives as Python objects); None without one."""
    with tx() as cur:
        cur.execute(f"select to_regclass('{APP_SCHEMA}.model_runs') is not null")
        if not cur.fetchone()[0]:
            return None
        cur.execute(
            f"select * from {APP_SCHEMA}.model_runs where model_version = %s", (model_version,)
        )
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d.name for d in cur.description], row, strict=True))


def mark_published(tx: Transaction, model_version: str) -> None:
    with tx() as cur:
        cur.execute(
            f"update {APP_SCHEMA}.model_runs set published = true where model_version = %s",
            (model_version,),
        )


def recommend(
    tx: Transaction, user_id: str, k: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """Top-k videos for a user through recommend_videos(), `exclude` left out; a user with
    neither a vector nor reviews is an error."""
    check_k(k)
    excluded = check_exclude(exclude) or None
    with tx() as cur:
        cur.execute(
            f"select exists(select 1 from {APP_SCHEMA}.user_embeddings where user_id = %s), "
            f"exists(select 1 from {APP_SCHEMA}.reviewed_videos where user_id = %s)",
            (user_id, user_id),
        )
        has_vector, has_reviews = cur.fetchone()
        if not has_vector and not has_reviews:
            raise UserError(f"unknown user id {user_id!r}: no embedding and no reviews")
        cur.execute(
            f"select video_id::text, product_url, score "
            f"from {APP_SCHEMA}.recommend_videos(%s, %s, %s::uuid[])",
            (user_id, k, excluded),
        )
        return [Recommendation(r[0], r[1], float(r[2])) for r in cur.fetchall()]


def recommend_for_likes(
    tx: Transaction, video_ids: list[str], k: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """Top-k videos for someone known only by likes, through recommend_for_likes()."""
    check_k(k)
    likes = check_video_ids(video_ids)
    excluded = check_exclude(exclude) or None
    with tx() as cur:
        cur.execute(
            f"select video_id::text, product_url, score "
            f"from {APP_SCHEMA}.recommend_for_likes(%s::uuid[], %s, %s::uuid[])",
            (likes, k, excluded),
        )
        return [Recommendation(r[0], r[1], float(r[2])) for r in cur.fetchall()]


def similar(
    tx: Transaction, video_id: str, k: int, exclude: Iterable[str] = ()
) -> list[Recommendation]:
    """The k videos closest to one video through similar_videos()."""
    check_k(k)
    (key,) = check_video_ids([video_id])
    excluded = check_exclude(exclude) or None
    with tx() as cur:
        cur.execute(
            f"select video_id::text, product_url, score "
            f"from {APP_SCHEMA}.similar_videos(%s, %s, %s::uuid[])",
            (key, k, excluded),
        )
        return [Recommendation(r[0], r[1], float(r[2])) for r in cur.fetchall()]
