"""The behaviour every warehouse backend promises, run against each of them: the embedded DuckDB
file and the real Postgres + pgvector. A new backend joins with a test class that
subclasses `BackendContract` and gives it a `world`.

Each world holds the same data: registered videos, an `interactions` mart (reviews with labels),
and vectors in the published layout (trainer/ml/model.py), so "the model's order" can be computed
here in numpy and compared with what the database returns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.marts import create_postgres_marts
from tests.support.pg_server import PgServer
from trainer.backends.base import MAX_EXCLUDE, MAX_K, Warehouse
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse
from trainer.errors import UserError
from trainer.ml.model import fold_in, publish_layout

N_VIDEOS, N_USERS, LEARNED_DIM = 80, 12, 14
VIDEOS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"contract-video-{i}")) for i in range(N_VIDEOS)]
USERS = [f"reviewer{u:02d}" for u in range(N_USERS)]
COLD_USER = "cold_reviewer"  # has reviews but no vector: gets the popular ranking


def _reviews() -> list[tuple[str, str, int, bool, float]]:
    rng = np.random.default_rng(11)
    popularity = np.arange(N_VIDEOS, 0, -1, dtype=float) ** 2
    rows = []
    for user in [*USERS, COLD_USER]:
        for i in rng.choice(N_VIDEOS, size=9, replace=False, p=popularity / popularity.sum()):
            stars = int(rng.integers(1, 6))
            rows.append((user, VIDEOS[i], stars, stars >= 4, stars / 5))
    return rows


REVIEWS = _reviews()
REVIEWED = {u: {r[1] for r in REVIEWS if r[0] == u} for u in [*USERS, COLD_USER]}


def model_vectors(seed: int, learned_dim: int = LEARNED_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(videos, users) in the published layout, from random unit towers and biases."""
    rng = np.random.default_rng(seed)

    def unit(rows: int) -> np.ndarray:
        x = rng.normal(size=(rows, learned_dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    scoring = np.hstack([rng.normal(scale=0.3, size=(N_VIDEOS, 1)), unit(N_VIDEOS)])
    users, videos = publish_layout(np.hstack([np.ones((N_USERS, 1)), unit(N_USERS)]), scoring)
    return videos, users


def cosine_order(videos: np.ndarray, query: np.ndarray, exclude: set[str]) -> list[str]:
    cos = videos @ query / (np.linalg.norm(videos, axis=1) * np.linalg.norm(query))
    return [VIDEOS[i] for i in np.argsort(-cos, kind="stable") if VIDEOS[i] not in exclude]


@dataclass
class World:
    wh: Warehouse

    def publish(self, version: str, seed: int, learned_dim: int = LEARNED_DIM):
        videos, users = model_vectors(seed, learned_dim)
        self.wh.publish_embeddings((VIDEOS, videos), (USERS, users), version)
        return videos, users

    def change_marts(self) -> None:
        """What a newer load + dbt build would do: reviews move, popularity shifts."""
        self.wh.execute(f"delete from interactions where user_id = '{USERS[0]}'")
        self.wh.execute(f"update interactions set label = not label where user_id = '{COLD_USER}'")

    def versions(self) -> list[tuple[str, int]]:
        frame = self.wh.read(
            "select model_version, count(*) as n from video_embeddings group by model_version"
        )
        return sorted(zip(frame["model_version"], frame["n"], strict=True))


def duckdb_world(tmp_path: Path) -> Iterator[World]:
    with DuckDBWarehouse(tmp_path / "contract.duckdb") as wh:
        wh.ensure_app_schema()
        wh.con.executemany(
            "insert into videos (id, product_url) values (?, ?)",
            [(v, f"https://www.dmm.co.jp/-/detail/=/cid=c{i}") for i, v in enumerate(VIDEOS)],
        )
        # A stand-in for the dbt mart (built for real in tests/dbt).
        wh.execute(
            "create table interactions (user_id varchar, video_id uuid, stars integer, "
            "label boolean, weight double)"
        )
        wh.execute(
            "create view video_popularity as select video_id, count(*) as positives "
            "from interactions where label group by video_id"
        )
        wh.con.executemany("insert into interactions values (?, ?, ?, ?, ?)", REVIEWS)
        yield World(wh)


def postgres_world(pg: PgServer) -> Iterator[World]:
    pg.database("contract_tests", activate=False)
    with pg.connect("contract_tests") as con:
        wh = PostgresWarehouse.from_target(pg.target("contract_tests"))
        wh.ensure_app_schema()
        con.execute(
            "insert into public.videos (id, product_url) select unnest(%s::uuid[]), "
            "'https://www.dmm.co.jp/-/detail/=/cid=c' || generate_series(0, %s - 1)",
            (VIDEOS, N_VIDEOS),
        )
        create_postgres_marts(con, REVIEWS)
    try:
        yield World(wh)
    finally:
        wh.close()


class BackendContract:
    """The shared behaviour; a backend's test class adds a `world` fixture (implicit's
    recommender_base_test pattern)."""

    def test_recommend_excludes_what_the_user_reviewed_and_ranks_as_the_model(
        self, world: World
    ) -> None:
        videos, users = world.publish("c1", seed=1)
        for u, user in enumerate(USERS[:6]):
            got = world.wh.recommend(user, 10)
            assert not {r.video_id for r in got} & REVIEWED[user]
            assert [r.video_id for r in got] == cosine_order(videos, users[u], REVIEWED[user])[:10]
            assert [r.score for r in got] == sorted((r.score for r in got), reverse=True)
            assert all(r.product_url.startswith("https://") for r in got)

    def test_similar_is_the_models_order_for_one_like_without_the_video_itself(
        self, world: World
    ) -> None:
        videos, _ = world.publish("c2", seed=2)
        got = world.wh.similar(VIDEOS[5], 7)
        expected = cosine_order(videos, fold_in(videos, [5]), {VIDEOS[5]})[:7]
        assert [r.video_id for r in got] == expected

    def test_a_visitor_known_by_likes_gets_the_user_tower_on_those_likes(
        self, world: World
    ) -> None:
        videos, _ = world.publish("c12", seed=13)
        likes = [4, 17, 33]
        got = world.wh.recommend_for_likes([VIDEOS[i] for i in likes], 5)
        expected = cosine_order(videos, fold_in(videos, likes), {VIDEOS[i] for i in likes})[:5]
        assert [r.video_id for r in got] == expected
        assert world.wh.recommend_for_likes([str(uuid.uuid4())], 5) == []  # nothing published
        with pytest.raises(UserError, match="uuid"):
            world.wh.recommend_for_likes(["not-a-uuid"], 5)

    def test_a_reviewer_without_a_vector_gets_the_popular_videos_they_did_not_review(
        self, world: World
    ) -> None:
        world.publish("c3", seed=3)
        positives: dict[str, int] = {}
        for _, video, _, label, _ in REVIEWS:
            positives[video] = positives.get(video, 0) + int(label)
        ranked = sorted((-n, v) for v, n in positives.items() if n and v not in REVIEWED[COLD_USER])
        got = world.wh.recommend(COLD_USER, 5)
        assert [(r.video_id, r.score) for r in got] == [(v, float(-n)) for n, v in ranked[:5]]

    def test_exclude_leaves_out_those_videos_and_still_answers_k_in_the_models_order(
        self, world: World
    ) -> None:
        """The app's already shown / disliked videos: excluding the first 3 of an answer gives
        the model's order without them, still k rows, on every path (popular included)."""
        videos, users = world.publish("c13", seed=14)

        def ids(rows) -> list[str]:
            return [r.video_id for r in rows]

        user = USERS[4]
        shown = ids(world.wh.recommend(user, 10))[:3]
        got = ids(world.wh.recommend(user, 10, exclude=shown))
        assert got == cosine_order(videos, users[4], REVIEWED[user] | set(shown))[:10]
        assert len(got) == 10 and not set(got) & set(shown)

        shown = ids(world.wh.similar(VIDEOS[5], 7))[:3]
        got = ids(world.wh.similar(VIDEOS[5], 7, exclude=shown))
        assert got == cosine_order(videos, fold_in(videos, [5]), {VIDEOS[5], *shown})[:7]

        likes = [4, 17, 33]
        liked = [VIDEOS[i] for i in likes]
        shown = ids(world.wh.recommend_for_likes(liked, 5))[:3]
        got = ids(world.wh.recommend_for_likes(liked, 5, exclude=shown))
        assert got == cosine_order(videos, fold_in(videos, likes), {*liked, *shown})[:5]

        positives: dict[str, int] = {}
        for _, video, _, label, _ in REVIEWS:
            positives[video] = positives.get(video, 0) + int(label)
        shown = ids(world.wh.recommend(COLD_USER, 5))[:3]
        ranked = sorted(
            (-n, v)
            for v, n in positives.items()
            if n and v not in REVIEWED[COLD_USER] and v not in shown
        )
        got = ids(world.wh.recommend(COLD_USER, 5, exclude=[s.upper() for s in shown]))
        assert got == [v for _, v in ranked[:5]] and len(got) == 5

        assert ids(world.wh.recommend(user, 10, exclude=[])) == ids(world.wh.recommend(user, 10))
        with pytest.raises(UserError, match="uuid"):
            world.wh.similar(VIDEOS[5], 5, exclude=["not-a-uuid"])
        too_many = [str(uuid.uuid4()) for _ in range(MAX_EXCLUDE + 1)]
        with pytest.raises(UserError, match=f"at most {MAX_EXCLUDE}"):
            world.wh.recommend_for_likes(liked, 5, exclude=too_many)

    def test_serving_answers_from_what_was_published_not_from_newer_marts(
        self, world: World
    ) -> None:
        """A load and dbt build that were not published (yet) change nothing recommend says:
        the exclusions and the popular list are those of the published model's data."""
        world.publish("c11", seed=12)
        before = {u: world.wh.recommend(u, 10) for u in (USERS[0], COLD_USER)}
        world.change_marts()
        assert {u: world.wh.recommend(u, 10) for u in (USERS[0], COLD_USER)} == before

    def test_an_unknown_user_or_video_is_a_clear_answer(self, world: World) -> None:
        world.publish("c4", seed=4)
        with pytest.raises(UserError, match="unknown user id 'nobody'"):
            world.wh.recommend("nobody", 5)
        with pytest.raises(UserError, match="uuid"):
            world.wh.similar("not-a-uuid", 5)
        assert world.wh.similar(str(uuid.uuid4()), 5) == []  # a video without a vector

    def test_k_outside_1_to_max_k_is_a_clear_error(self, world: World) -> None:
        world.publish("c10", seed=11)
        for bad in (0, -3, MAX_K + 1):
            with pytest.raises(UserError, match=f"k must be between 1 and {MAX_K}"):
                world.wh.recommend(USERS[0], bad)
            with pytest.raises(UserError, match=f"k must be between 1 and {MAX_K}"):
                world.wh.similar(VIDEOS[0], bad)
        assert len(world.wh.recommend(USERS[0], MAX_K)) == N_VIDEOS - len(REVIEWED[USERS[0]])

    def test_a_wider_model_is_a_clear_error_naming_both_dimensions(self, world: World) -> None:
        world.publish("c5", seed=5)
        before = world.versions()
        with pytest.raises(UserError) as info:
            world.publish("too-wide", seed=6, learned_dim=298)  # 300 published coordinates
        message = str(info.value)
        assert "300" in message and "256" in message and "video_embeddings" in message
        assert world.versions() == before == [("c5", N_VIDEOS)]

    def test_a_model_with_nan_is_refused_and_the_previous_vectors_stay(self, world: World) -> None:
        world.publish("c6", seed=7)
        videos, users = model_vectors(8)
        videos[3, 4] = np.nan
        with pytest.raises(UserError, match="nothing published"):
            world.wh.publish_embeddings((VIDEOS, videos), (USERS, users), "c7")
        assert world.versions() == [("c6", N_VIDEOS)]

    def test_a_new_version_replaces_the_old_one(self, world: World) -> None:
        world.publish("c8", seed=9)
        videos, users = model_vectors(10)
        world.wh.publish_embeddings((VIDEOS[10:], videos[10:]), (USERS, users), "c9")
        assert world.versions() == [("c9", N_VIDEOS - 10)]

    def test_record_run_upserts_one_row_with_json(self, world: World) -> None:
        import datetime as dt

        started = dt.datetime(2026, 1, 5, 19, 0, tzinfo=dt.UTC)
        world.wh.record_run(
            {
                "model_version": "r1",
                "started_at": started,
                "config": {"dim": 64},
                "published": False,
            }
        )
        world.wh.record_run(
            {"model_version": "r1", "started_at": started, "metrics": {"recall@10": [0.1, 0.2]},
             "published": True}
        )  # fmt: skip
        rows = world.wh.read(
            "select config, metrics, published from model_runs where model_version = 'r1'"
        ).rows()
        assert len(rows) == 1
        config, metrics, published = (json.loads(v) if isinstance(v, str) else v for v in rows[0])
        assert (config, metrics, published) == ({"dim": 64}, {"recall@10": [0.1, 0.2]}, True)

    def test_run_row_and_mark_published_take_a_version_as_a_value(self, world: World) -> None:
        import datetime as dt

        odd = "v1' or 'x'='x"  # a value, never SQL text
        started = dt.datetime(2026, 1, 5, 19, 0, tzinfo=dt.UTC)
        assert world.wh.run_row("r2") is None and world.wh.run_row(odd) is None
        for version in ("r2", odd):
            world.wh.record_run(
                {"model_version": version, "started_at": started, "published": False,
                 "notes": {"artifact_sha256": "ab"}}
            )  # fmt: skip
        world.wh.mark_published(odd)
        row = world.wh.run_row(odd)
        assert row is not None and row["notes"] == {"artifact_sha256": "ab"} and row["published"]
        assert world.wh.run_row("r2")["published"] is False
        assert world.wh.table_exists("model_runs") and not world.wh.table_exists("x' or '1'='1")


class TestDuckDB(BackendContract):
    @pytest.fixture
    def world(self, tmp_path: Path) -> Iterator[World]:
        yield from duckdb_world(tmp_path)


@pytest.mark.postgres
class TestPostgres(BackendContract):
    @pytest.fixture
    def world(self, pg_env: PgServer) -> Iterator[World]:
        yield from postgres_world(pg_env)
