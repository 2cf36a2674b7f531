"""DuckDB refuses what Postgres refuses: a bad publish writes nothing and the old vectors stay."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from trainer.backends.duckdb import DuckDBWarehouse
from trainer.errors import UserError

VIDEOS = [str(uuid.UUID(int=i + 1)) for i in range(5)]
USERS = [f"rv{i}" for i in range(4)]


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def snapshot(wh: DuckDBWarehouse) -> list[tuple]:
    return wh.con.execute(
        "select 'v', cast(video_id as varchar), embedding, model_version from video_embeddings "
        "union all select 'u', user_id, embedding, model_version from user_embeddings "
        "order by 1, 2"
    ).fetchall()


@pytest.fixture
def warehouse(tmp_path: Path):
    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        wh.ensure_app_schema()
        wh.publish_embeddings((VIDEOS, vectors(5)), (USERS, vectors(4, seed=1)), "good")
        yield wh


def _nan(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.copy()
    matrix[2, 3] = np.nan
    return matrix


BAD = {
    "NaN": lambda: ((VIDEOS, _nan(vectors(5))), (USERS, vectors(4))),
    "infinite": lambda: ((VIDEOS, vectors(5)), (USERS, vectors(4) * np.float32(np.inf))),
    "wide": lambda: ((VIDEOS, vectors(5, 8)), (USERS, vectors(4, 6))),  # widths differ
    "one row per id": lambda: ((VIDEOS, vectors(4)), (USERS, vectors(4))),
    "duplicate": lambda: ((VIDEOS[:4] + VIDEOS[:1], vectors(5)), (USERS, vectors(4))),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_publish_is_a_clear_error_and_leaves_the_old_vectors(warehouse, case) -> None:
    before = snapshot(warehouse)
    assert len(before) == 9 and {row[3] for row in before} == {"good"}
    videos, users = BAD[case]()
    with pytest.raises(UserError, match="nothing published"):
        warehouse.publish_embeddings(videos, users, "bad")
    assert snapshot(warehouse) == before


def test_a_fault_after_the_first_table_was_written_leaves_both_tables_as_they_were(
    warehouse, monkeypatch
) -> None:
    """The video table is replaced inside the transaction, then the user table's insert fails:
    the rollback must restore the video rows too, vector for vector."""
    before = snapshot(warehouse)
    seen_inside: list[list[tuple]] = []
    real_run = warehouse._run  # every statement of the publish goes through it

    def run(sql: str, params: list | None = None) -> None:
        if sql.lstrip().startswith("insert into user_embeddings"):
            seen_inside.append(  # the new video rows are written, in the open transaction
                warehouse.con.execute(
                    "select distinct model_version from video_embeddings"
                ).fetchall()
            )
            raise RuntimeError("disk full while writing user_embeddings")
        real_run(sql, params)

    monkeypatch.setattr(warehouse, "_run", run)
    with pytest.raises(RuntimeError, match="disk full"):
        warehouse.publish_embeddings(
            (VIDEOS, vectors(5, seed=7)), (USERS, vectors(4, seed=8)), "new"
        )
    assert seen_inside == [[("new",)]]
    monkeypatch.undo()
    after = snapshot(warehouse)
    assert after == before  # ids, vectors and versions, row for row
    np.testing.assert_array_equal(
        np.array([row[2] for row in after if row[0] == "v"], dtype=np.float32)[:, :8], vectors(5)
    )
    np.testing.assert_array_equal(
        np.array([row[2] for row in after if row[0] == "u"], dtype=np.float32)[:, :8],
        vectors(4, seed=1),
    )
    # the connection is usable: the next publish goes through
    warehouse.publish_embeddings((VIDEOS, vectors(5, seed=7)), (USERS, vectors(4, seed=8)), "new")
    assert {row[3] for row in snapshot(warehouse)} == {"new"}


def test_republishing_registers_each_catalog_video_once_and_keeps_its_first_row(
    tmp_path: Path,
) -> None:
    """A second train without a dbt build in between (the marts still mark the videos
    register_at_publish) leaves the videos rows as the first publish wrote them; a catalog row
    whose URL the app already has under another id is not registered again."""
    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        wh.ensure_app_schema()
        wh.con.execute(
            "insert into videos (id, product_url, created_at) values (?, 'https://x/taken', "
            "timestamp '2020-01-01')",
            [str(uuid.UUID(int=99))],
        )
        wh.con.execute(
            "create table video_catalog as select cast(id as uuid) as video_id, url as "
            "product_url, true as register_at_publish from (values "
            f"('{VIDEOS[0]}', 'https://x/0'), ('{VIDEOS[1]}', 'https://x/1'), "
            f"('{VIDEOS[2]}', 'https://x/taken')) as t(id, url)"
        )
        wh.publish_embeddings((VIDEOS, vectors(5)), (USERS, vectors(4, seed=1)), "first")
        first = wh.con.execute("select * from videos order by product_url").fetchall()
        wh.publish_embeddings((VIDEOS, vectors(5, seed=2)), (USERS, vectors(4, seed=3)), "second")
        again = wh.con.execute("select * from videos order by product_url").fetchall()
    assert again == first
    assert [(str(r[0]), r[1]) for r in first] == [
        (VIDEOS[0], "https://x/0"),
        (VIDEOS[1], "https://x/1"),
        (str(uuid.UUID(int=99)), "https://x/taken"),
    ]
