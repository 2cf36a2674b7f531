"""A small published world on a real Postgres: registered videos, marts with reviews, and the
helpers that publish random embeddings into it and read back what a reader sees. Shared by
the publish, ANN index, serving and role tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import psycopg

from tests.support.marts import create_postgres_marts
from tests.support.pg_server import PgServer
from trainer.backends.postgres import ANN_INDEX_SUFFIX, PostgresWarehouse

N_VIDEOS, N_USERS, MODEL_DIM = 240, 40, 32


def vid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"video-{i}"))


@dataclass
class World:
    pg: PgServer
    db: str
    wh: PostgresWarehouse
    video_ids: list[str]
    user_ids: list[str]
    reviewed: dict[str, set[str]]
    likes: dict[str, int] = field(default_factory=dict)  # positives per video

    def warehouse(self) -> PostgresWarehouse:
        return PostgresWarehouse.from_target(self.pg.target(self.db))

    def connect(self) -> psycopg.Connection:
        return self.pg.connect(self.db)


def jwt_sub(user_id: str) -> str:
    """The JWT `sub` claim of the app user keyed `user_id` (public.my_user_id(): 'app:' || sub)."""
    return user_id.removeprefix("app:")


def vectors(seed: int, rows: int, dim: int = MODEL_DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


def publish(
    wh: PostgresWarehouse, world: World, version: str, seed: int, videos=None, dim=MODEL_DIM
):
    ids = videos if videos is not None else world.video_ids
    v, u = vectors(seed, len(ids), dim), vectors(seed + 1, len(world.user_ids), dim)
    wh.publish_embeddings((ids, v), (world.user_ids, u), version)
    return v, u


def make_world(
    pg_env: PgServer, db: str, before_migrations: Callable[[psycopg.Connection], None] | None = None
) -> Iterator[World]:
    """A fresh database `db`, migrated (after `before_migrations`, e.g. a Supabase project's
    default privileges), with 260 registered videos (20 never embedded) and marts in which 41
    app users (`app:cold_user` last, never published; ids as public.my_user_id() keys
    them, so a JWT with `sub` = jwt_sub(id) is theirs) reviewed 8 popular-skewed videos each."""
    pg_env.database(db)
    if before_migrations is not None:
        with pg_env.connect(db) as con:
            before_migrations(con)
    wh = PostgresWarehouse.from_target(pg_env.target(db))
    wh.ensure_app_schema()
    video_ids = [vid(i) for i in range(N_VIDEOS + 20)]  # 20 registered but never embedded
    with pg_env.connect(db) as con:
        con.execute(
            "insert into public.videos (id, product_url) select unnest(%s::uuid[]), "
            "'https://www.dmm.co.jp/-/detail/=/cid=v' || generate_series(0, %s - 1)",
            (video_ids, len(video_ids)),
        )
        rng = np.random.default_rng(5)
        rows, reviewed = [], {}
        popularity = np.arange(N_VIDEOS, 0, -1, dtype=float) ** 2
        user_ids = [f"app:user{u:03d}" for u in range(N_USERS)] + ["app:cold_user"]
        for user in user_ids:
            picks = rng.choice(N_VIDEOS, size=8, replace=False, p=popularity / popularity.sum())
            reviewed[user] = {video_ids[i] for i in picks}
            for i in picks:
                stars = int(rng.integers(1, 6))
                rows.append((user, video_ids[i], stars, stars >= 4, stars / 5))
        create_postgres_marts(con, rows)
    world = World(pg_env, db, wh, video_ids[:N_VIDEOS], user_ids[:N_USERS], reviewed)
    yield world
    wh.close()


def published_slot(con: psycopg.Connection, view: str = "video_embeddings") -> str:
    """The slot table the view reads."""
    return con.execute("select public.embedding_slot(%s)", (view,)).fetchone()[0]


def state(con: psycopg.Connection) -> dict:
    """What a reader sees: versions, row counts, a checksum of the vectors, the index. One
    statement, so the slot it names is the one its rows came from."""
    row = con.execute(
        "select (select array_agg(distinct model_version order by model_version) from "
        "public.video_embeddings), (select array_agg(distinct model_version order by "
        "model_version) from public.user_embeddings), (select count(*) from "
        "public.video_embeddings), (select count(*) from public.user_embeddings), "
        "(select md5(string_agg(video_id::text || embedding::text, ',' order by video_id)) "
        "from public.video_embeddings), "
        "to_regclass('public.' || public.embedding_slot('video_embeddings') || %s)::oid",
        (ANN_INDEX_SUFFIX,),
    ).fetchone()
    keys = ("video_versions", "user_versions", "videos", "users", "checksum", "index_oid")
    return dict(zip(keys, row, strict=True))


def exact_top(world: World, v: np.ndarray, u: np.ndarray, user: str, k: int) -> list[str]:
    norm_v = v / np.linalg.norm(v, axis=1, keepdims=True)
    uvec = u[world.user_ids.index(user)]
    scores = norm_v @ (uvec / np.linalg.norm(uvec))
    order = [world.video_ids[i] for i in np.argsort(-scores)]
    return [x for x in order if x not in world.reviewed[user]][:k]
