"""A new app user from likes: the Python function, DuckDB's macro and Postgres's
recommend_for_likes give the same vector and the same top 5, from one trained model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.support.marts import create_postgres_marts
from tests.support.pg_server import PgServer
from tests.support.warehouses import build_duckdb
from trainer.backends.postgres import PostgresWarehouse
from trainer.cli import main
from trainer.release.artifact import load_artifact


@pytest.fixture(scope="module")
def published(synth_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cold")
    db = tmp / "warehouse.duckdb"
    build_duckdb(synth_csv, db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DUCKDB_PATH", str(db))
        args = ["train", "--epochs", "2", "--quiet", "--embedding-dim", "16"]
        args += ["--out-model", str(tmp / "two_tower_latest.safetensors")]
        args += [
            "--out-video-emb",
            str(tmp / "v.parquet"),
            "--out-user-emb",
            str(tmp / "u.parquet"),
        ]
        assert main(args) == 0
    return tmp


def python_top(artifact, likes: list[str], k: int) -> list[str]:
    """The artifact's own ranking for a visitor with these likes: cosine with embed_new_user,
    likes excluded, ties by video id as SQL breaks them (videos reviewed by exactly the same
    users have identical vectors)."""
    scores = artifact.item_vectors @ artifact.embed_new_user(likes)
    order = sorted(
        (v for v in artifact.video_ids if v not in likes),
        key=lambda v: (-round(float(scores[artifact.video_ids.index(v)]), 5), v),
    )
    return order[:k]


def test_python_and_sql_agree_on_a_new_users_vector(published: Path) -> None:
    artifact = load_artifact(published / "two_tower_latest.safetensors")
    likes = artifact.video_ids[:3]
    python_vector = artifact.embed_new_user(likes)
    con = duckdb.connect(str(published / "warehouse.duckdb"), read_only=True)
    literal = "[" + ", ".join(f"'{v}'" for v in likes) + "]::uuid[]"
    sql_vector = np.array(con.execute(f"select user_vector_from_likes({literal})").fetchone()[0])
    top = con.execute(
        f"select cast(video_id as varchar) from recommend_for_likes({literal}, 5)"
    ).fetchall()
    con.close()
    assert sql_vector.shape == (256,) and not sql_vector[16:].any()  # zero padding
    # The same published-layout vector, [0, 1, unit mean], not merely the same direction: the
    # bias coordinate's weight of 1 is what makes its cosine rank as the model scores.
    assert np.allclose(sql_vector[:16], python_vector, atol=1e-5)
    # The SQL top 5 are the Python top 5 by cosine, likes excluded.
    assert [row[0] for row in top] == python_top(artifact, likes, 5)


@pytest.mark.postgres
def test_postgres_gives_the_same_top_5_for_likes_as_duckdb_and_python(
    published: Path, pg_env: PgServer
) -> None:
    """The same model published to Postgres (recommend_for_likes through its ANN index)."""
    artifact = load_artifact(published / "two_tower_latest.safetensors")
    con = duckdb.connect(str(published / "warehouse.duckdb"), read_only=True)
    videos = con.execute("select cast(id as varchar), product_url from videos").fetchall()
    reviews = con.execute(
        "select user_id, cast(video_id as varchar), stars, label, weight from interactions"
    ).fetchall()
    pg_env.database("cold_start", activate=False)
    wh = PostgresWarehouse.from_target(pg_env.target("cold_start"))
    try:
        wh.ensure_app_schema()
        with pg_env.connect("cold_start") as pg, pg.cursor() as cur:
            cur.executemany("insert into public.videos (id, product_url) values (%s, %s)", videos)
            create_postgres_marts(pg, reviews)
        wh.publish_embeddings(
            (artifact.video_ids, artifact.item_vectors),
            (artifact.user_ids, artifact.user_vectors),
            artifact.version,
        )
        for likes in (artifact.video_ids[:3], artifact.video_ids[10:13], artifact.video_ids[-3:]):
            literal = "[" + ", ".join(f"'{v}'" for v in likes) + "]::uuid[]"
            duck = con.execute(
                f"select cast(video_id as varchar) from recommend_for_likes({literal}, 5)"
            ).fetchall()
            postgres = [r.video_id for r in wh.recommend_for_likes(likes, 5)]
            assert postgres == [r[0] for r in duck] == python_top(artifact, likes, 5)
    finally:
        wh.close()
        con.close()
