"""The videos a publish's vectors refer to: registered first, and the missing ones named.

Every video vector has a foreign key to public.videos. A publish registers, inside its own
transaction and so only after the gate, the reviewed products the app lacks: from this
database's marts (video_catalog.register_at_publish), or, publishing another database's model
(the snapshot flow), from the videos it carries. Vectors of videos still missing are refused
with a count and an example rather than a bare constraint error.
"""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pyarrow as pa

from trainer.backends.postgres.connection import Transaction
from trainer.backends.postgres.copy_io import copy_arrow
from trainer.backends.postgres.layout import APP_SCHEMA
from trainer.errors import UserError


def register_videos(cur: psycopg.Cursor, videos: pa.Table) -> None:
    """Insert the videos this database lacks, with the ids they have where the model was
    trained (deterministic for ingested ones), before any vector refers to them. An app row
    with the same product_url and another id wins (`on conflict do nothing`); the vectors of
    such a video are then reported by check_videos_registered."""
    cur.execute(
        "create temporary table _stage_videos (id uuid not null, product_url text not null) "
        "on commit drop"
    )
    copy_arrow(cur, "_stage_videos", videos.select(["id", "product_url"]))
    cur.execute(
        f"insert into {APP_SCHEMA}.videos (id, product_url) "
        "select s.id, s.product_url from _stage_videos as s "
        # no `where not exists (... videos ...)`: its plan can scan the rows this very
        # insert adds (quadratic when videos was analyzed empty); the conflict check probes
        # the keys instead
        "order by s.id on conflict do nothing"
    )


def register_catalog(cur: psycopg.Cursor) -> None:
    """Insert the videos this database's marts mark register_at_publish (minimal rows with
    the catalog's deterministic ids); nothing where there are no marts (production)."""
    cur.execute("select to_regclass('video_catalog') is not null")
    if not cur.fetchone()[0]:
        return
    cur.execute(
        f"insert into {APP_SCHEMA}.videos (id, product_url) "
        "select c.video_id, c.product_url from video_catalog as c where c.register_at_publish "
        "order by c.video_id on conflict do nothing"
    )


def check_videos_registered(cur: psycopg.Cursor) -> None:
    """Refuse staged video vectors (_stage_video_embeddings) of videos not in videos."""
    cur.execute(
        "select count(*), min(s.key::text) from _stage_video_embeddings as s "
        f"where not exists (select 1 from {APP_SCHEMA}.videos as v where v.id = s.key)"
    )
    _unregistered_error(*cur.fetchone())


def raise_unregistered(tx: Transaction, keys: list[str] | np.ndarray) -> None:
    """After a foreign key violation: count the model's video ids missing from videos (in a
    fresh transaction from `tx`: the publish's is gone)."""
    ids = [uuid.UUID(bytes=bytes(k)) for k in keys]
    with tx() as cur:
        cur.execute(
            "select count(*), min(k::text) from unnest(%s::uuid[]) as k "
            f"where not exists (select 1 from {APP_SCHEMA}.videos as v where v.id = k)",
            (ids,),
        )
        _unregistered_error(*cur.fetchone())


def _unregistered_error(missing: int, example: str | None) -> None:
    if missing:
        raise UserError(
            f"{missing} video ids of the model are not in {APP_SCHEMA}.videos "
            f"(e.g. {example}); "
            "register them, or build the marts with var ingest_videos on (the default) so "
            "the publish does, then publish again "
            "(publishing from a restored copy: the app may have registered one of these "
            "products under another id since the snapshot; snapshot again)"
        )
