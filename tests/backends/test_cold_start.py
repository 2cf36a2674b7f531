"""A new app user from likes: the Python function and the SQL macro give the same vector."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.support.warehouses import build_duckdb
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
    # The SQL top 5 are the Python top 5 by cosine, likes excluded, ties by video id as SQL
    # breaks them (videos reviewed by exactly the same users have identical vectors).
    scores = artifact.item_vectors @ python_vector
    order = sorted(
        (v for v in artifact.video_ids if v not in likes),
        key=lambda v: (-round(float(scores[artifact.video_ids.index(v)]), 5), v),
    )
    assert [row[0] for row in top] == order[:5]
