"""The dbt models on a real DuckDB file: rejects, URL keys, dedupe, ingest, splits, negatives."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from tests.support.datasets import EDGE_CASE_LINES as LINES
from tests.support.datasets import EDGE_CASE_REJECTS as EXPECTED_REJECTS
from tests.support.warehouses import build_duckdb
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.transform.dbt import PROJECT_DIR

DMM = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid="
REGISTERED_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def handmade_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("handmade")
    csv = tmp / "reviews.csv"
    csv.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    db = tmp / "warehouse.duckdb"
    with DuckDBWarehouse(db) as warehouse:  # the app already knows abc003, spelt its own way
        warehouse.ensure_app_schema()
        warehouse.con.execute(
            "insert into videos (id, product_url) values (?, ?)",
            [REGISTERED_ID, "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=abc003"],
        )
    build_duckdb(csv, db)
    return db


@pytest.fixture(scope="module")
def handmade(handmade_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(handmade_db), read_only=True)
    yield con
    con.close()


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_every_reject_reason_is_recorded_on_its_line(handmade) -> None:
    found = dict(rows(handmade, "select line_number, reason from review_rejects"))
    assert found == EXPECTED_REJECTS


def test_every_line_is_an_interaction_or_a_reject(handmade) -> None:
    kept = {r[0] for r in rows(handmade, "select source_line_number from interactions")}
    assert kept == {2, 3, 4, 6, 8, 17, 19}
    assert kept.isdisjoint(EXPECTED_REJECTS)
    assert len(kept) + len(EXPECTED_REJECTS) == len(LINES) - 1


def test_url_spellings_collapse_to_one_video(handmade) -> None:
    keys = rows(
        handmade,
        "select source_line_number, product_key from interactions order by source_line_number",
    )
    assert keys[:3] == [(2, "dmm:abc001"), (3, "dmm:abc001"), (4, "dmm:abc001")]
    assert dict(keys)[19] == "example.com/v/9"
    videos = rows(handmade, "select count(distinct video_id) from interactions")[0][0]
    assert videos == 5


def test_dedupe_keeps_the_last_line_and_labels_by_stars(handmade) -> None:
    got = rows(
        handmade,
        "select user_id, product_key, stars, label, weight from interactions "
        "where user_id in ('alice', 'bob') order by user_id, product_key",
    )
    assert got == [
        ("alice", "dmm:abc001", 5, True, 1.0),
        ("alice", "dmm:abc002", 2, False, 0.4),
        ("bob", "dmm:abc001", 4, True, 0.8),
        ("bob", "dmm:abc003", 5, True, 1.0),
    ]


def test_dbt_registers_nothing_and_the_publish_registers_the_marked_videos_once(
    handmade, handmade_db: Path, tmp_path: Path
) -> None:
    registered = rows(
        handmade,
        "select distinct cast(video_id as varchar) from interactions "
        "where product_key = 'dmm:abc003'",
    )
    assert registered == [(REGISTERED_ID,)]
    assert rows(handmade, "select cast(id as varchar) from videos") == [(REGISTERED_ID,)]
    marked = rows(handmade, "select count(*) from video_catalog where register_at_publish")
    assert marked == [(4,)]  # the other 4 products, one row each whatever their spellings
    copy = tmp_path / "published.duckdb"
    shutil.copy(handmade_db, copy)
    with DuckDBWarehouse(copy) as warehouse:
        ids = warehouse.read("select distinct cast(video_id as varchar) as v from interactions")
        vectors = np.eye(len(ids), 8, dtype=np.float32) + 0.1
        for version in ("first", "again"):  # registering is idempotent
            warehouse.publish_embeddings(
                (ids["v"].to_list(), vectors), (["alice"], vectors[:1]), version
            )
            videos = warehouse.read(
                "select count(*) as n, count(distinct product_url) as urls from videos"
            ).row(0)
            assert videos == (5, 5)  # the registered one + 4 new, no duplicate spelling
            missing = warehouse.read(
                "select count(*) as n from interactions i left join videos v on v.id = i.video_id "
                "where v.id is null"
            )["n"][0]
            assert missing == 0


def test_with_ingest_videos_off_the_publish_is_asked_to_register_nothing(tmp_path: Path) -> None:
    csv, db = tmp_path / "reviews.csv", tmp_path / "warehouse.duckdb"
    csv.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    build_duckdb(csv, db, variables={"ingest_videos": False})
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert rows(
            con,
            "select count(*), count(*) filter (where register_at_publish), "
            "count(*) filter (where not is_registered) from video_catalog",
        ) == [(5, 0, 5)]
        summary = dict(rows(con, "select metric, value from quality_summary"))
        assert summary["videos_ingested"] == 0
    finally:
        con.close()


def test_ingested_ids_are_a_function_of_the_product_key(handmade) -> None:
    ids = dict(
        rows(
            handmade,
            "select product_key, cast(video_id as varchar) from int_video_catalog "
            "where not is_registered",
        )
    )
    import uuid

    for key, video_id in ids.items():
        assert video_id == str(uuid.UUID(hashlib.md5(f"video:{key}".encode()).hexdigest()))


def test_quality_summary_reconciles(handmade) -> None:
    summary = dict(rows(handmade, "select metric, value from quality_summary"))
    assert summary["file_data_lines"] == len(LINES) - 1
    assert summary["interactions"] + summary["rejected_lines"] == summary["file_data_lines"]
    assert summary["users"] == 5
    assert summary["positives"] == 6


# -- invariants on the larger synthetic scrape --------------------------------------------------
def test_splits_are_disjoint_per_user_about_80_20(synth_warehouse: Path) -> None:
    con = duckdb.connect(str(synth_warehouse), read_only=True)
    per_user = con.execute(
        "select user_id, count(*) as n, sum(case when split = 'valid' then 1 else 0 end) as v "
        "from interaction_splits group by user_id"
    ).fetchall()
    positives = con.execute("select count(*) from interactions where label").fetchone()[0]
    total = sum(n for _, n, _ in per_user)
    valid = sum(v for _, _, v in per_user)
    assert total == positives  # every positive is split exactly once
    for _, n, v in per_user:
        assert (v == 0) if n == 1 else (1 <= v <= n - 1)
    assert 0.17 < valid / total < 0.33
    con.close()


def test_negatives_are_unreviewed_and_k_per_positive(synth_warehouse: Path) -> None:
    con = duckdb.connect(str(synth_warehouse), read_only=True)
    reviewed = con.execute(
        "select count(*) from negative_samples n join interactions i "
        "on i.user_id = n.user_id and i.video_id = n.video_id"
    ).fetchone()[0]
    per_positive = con.execute(
        "select count(*) as k from negative_samples group by user_id, positive_video_id"
    ).fetchall()
    train = con.execute("select count(*) from interaction_splits where split = 'train'").fetchone()
    con.close()
    assert reviewed == 0
    assert len(per_positive) == train[0]  # every train positive got negatives
    assert {k for (k,) in per_positive} == {3}


def test_same_input_and_seed_give_identical_tables(
    synth_csv: Path, synth_warehouse: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.duckdb"
    build_duckdb(synth_csv, again)
    query = {
        "interactions": "select user_id, cast(video_id as varchar), stars, label from interactions",
        "interaction_splits": "select user_id, cast(video_id as varchar), split "
        "from interaction_splits",
        "negative_samples": "select user_id, cast(video_id as varchar), "
        "cast(positive_video_id as varchar) from negative_samples",
    }
    first = duckdb.connect(str(synth_warehouse), read_only=True)
    second = duckdb.connect(str(again), read_only=True)
    for table, sql in query.items():
        a = sorted(first.execute(sql).fetchall())
        b = sorted(second.execute(sql).fetchall())
        assert a == b, table
    first.close()
    second.close()


def test_a_different_split_seed_changes_the_split(
    synth_csv: Path, synth_warehouse: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.duckdb"
    build_duckdb(synth_csv, other, variables={"split_seed": 7})
    sql = "select user_id, cast(video_id as varchar) from interaction_splits where split = 'valid'"
    a = set(duckdb.connect(str(synth_warehouse), read_only=True).execute(sql).fetchall())
    b = set(duckdb.connect(str(other), read_only=True).execute(sql).fetchall())
    assert len(a) == len(b) and a != b


def test_the_tune_slice_is_carved_out_of_train_by_the_same_rule(synth_warehouse: Path) -> None:
    con = duckdb.connect(str(synth_warehouse), read_only=True)
    in_valid = con.execute("select count(*) from interaction_splits where tune and split = 'valid'")
    assert in_valid.fetchone()[0] == 0
    per_user = con.execute(
        "select count(*) filter (where split = 'train'), count(*) filter (where tune) "
        "from interaction_splits group by user_id"
    ).fetchall()
    con.close()
    assert sum(t for _, t in per_user) > 0
    for n_train, n_tune in per_user:  # round(n * 0.2), at least 1, at most n - 1; n = 1: none
        expected = 0 if n_train < 2 else min(n_train - 1, max(1, int(n_train * 0.2 + 0.5)))
        assert n_tune == expected


def test_split_membership_is_the_md5_rule_recomputed_in_polars(synth_warehouse: Path) -> None:
    """Every positive's split and tune flag, recomputed from interactions: per user, order the
    positives by (md5(seed|user|video), video); the first round_half_up(n * fraction), bounded to
    [1, n - 1] (none when n < 2), are held out; valid first, then the tune slice inside train."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    con = duckdb.connect(str(synth_warehouse), read_only=True)
    positives = con.sql(
        "select user_id, cast(video_id as varchar) as video_id from interactions where label"
    ).pl()
    actual = con.sql(
        "select user_id, cast(video_id as varchar) as video_id, split, tune from interaction_splits"
    ).pl()
    con.close()

    def held_out(frame: pl.DataFrame, seed: int, fraction: float) -> pl.DataFrame:
        n = pl.len().over("user_id")
        count = (
            pl.when(n < 2)
            .then(0)
            .otherwise(pl.min_horizontal(n - 1, pl.max_horizontal(1, (n * fraction + 0.5).floor())))
        )
        draw = pl.format("{}|{}|{}", pl.lit(str(seed)), "user_id", "video_id").map_elements(
            lambda key: hashlib.md5(key.encode()).hexdigest(), return_dtype=pl.String
        )
        ranked = frame.with_columns(draw=draw).sort("user_id", "draw", "video_id")
        return ranked.select(
            "user_id", "video_id", held=pl.int_range(1, pl.len() + 1).over("user_id") <= count
        )

    valid = held_out(positives, project["split_seed"], project["valid_fraction"])
    train = valid.filter(~pl.col("held")).select("user_id", "video_id")
    tune = held_out(train, project["tune_seed"], project["tune_fraction"])
    expected = valid.join(tune, on=["user_id", "video_id"], how="left").select(
        "user_id",
        "video_id",
        split=pl.when("held").then(pl.lit("valid")).otherwise(pl.lit("train")),
        tune=pl.col("held_right").fill_null(False),
    )
    key = ["user_id", "video_id"]
    assert expected.height == actual.height == positives.height
    assert expected["tune"].sum() > 0 and (expected["split"] == "valid").sum() > 0
    assert_frame_equal(expected.sort(key), actual.sort(key))


# -- which spelling and which registered row a product gets ------------------------------------
SPELLINGS = [
    "product_url,reviewer_id,stars",
    f"{DMM}xyz001/?i3_ref=a,alice,5",  # 2 spelling A: the earliest line
    f"{DMM}xyz001/,bob,4",  # 3 spelling B
    f"{DMM}xyz001/,carol,3",  # 4 B
    f"{DMM}xyz001/?i3_ref=a,dave,5",  # 5 A, superseded by line 6 (duplicate): not counted
    f"{DMM}xyz001/?i3_ref=a,dave,5",  # 6 A: 3 lines each, but kept reviews B 3, A 2
    f"{DMM}xyz001/,erin,4",  # 7 B
    "http://www.dmm.co.jp/digital/videoa/-/detail/=/cid=xyz002,frank,4",  # 8 a tie: earliest
    f"{DMM}xyz002/,gina,4",  # 9
    f"{DMM}reg001/,henry,5",  # 10 registered three times
    f"{DMM}reg002/,henry,4",  # 11 registered twice at the same time
]
REGISTERED = [  # (id, product_url, created_at)
    ("11111111-0000-4000-8000-000000000001", f"{DMM}reg001/", "2024-02-01"),
    ("11111111-0000-4000-8000-000000000002", f"{DMM}REG001", "2024-01-01"),  # earliest
    ("11111111-0000-4000-8000-000000000003", f"{DMM}reg001/?x=1", None),  # no date: last
    ("ffffffff-0000-4000-8000-000000000004", f"{DMM}reg002/", "2024-01-01"),
    ("00000000-0000-4000-8000-000000000005", f"{DMM}reg002/?x=1", "2024-01-01"),  # smaller id
]


@pytest.fixture(scope="module")
def spellings(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    tmp = tmp_path_factory.mktemp("spellings")
    csv = tmp / "reviews.csv"
    csv.write_text("\n".join(SPELLINGS) + "\n", encoding="utf-8")
    db = tmp / "warehouse.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        warehouse.ensure_app_schema()
        for row in REGISTERED:
            warehouse.con.execute(
                "insert into videos (id, product_url, created_at) values (?, ?, ?)", list(row)
            )
    build_duckdb(csv, db)
    con = duckdb.connect(str(db), read_only=True)
    yield con
    con.close()


def test_the_most_frequent_kept_spelling_names_an_unregistered_video(spellings) -> None:
    catalog = dict(
        rows(
            spellings,
            "select product_key, product_url from int_video_catalog where not is_registered",
        )
    )
    assert catalog == {
        "dmm:xyz001": f"{DMM}xyz001/",  # most kept reviews: not the earliest, not a raw-line tie
        "dmm:xyz002": "http://www.dmm.co.jp/digital/videoa/-/detail/=/cid=xyz002",  # tie: line 8
    }
    marked = rows(
        spellings, "select product_url from video_catalog where register_at_publish order by 1"
    )
    assert marked == [(catalog["dmm:xyz002"],), (catalog["dmm:xyz001"],)]


def test_the_earliest_registered_row_gives_the_video_id(spellings) -> None:
    catalog = rows(
        spellings,
        "select product_key, cast(video_id as varchar), product_url from int_video_catalog "
        "where is_registered order by 1",
    )
    assert catalog == [
        ("dmm:reg001", REGISTERED[1][0], REGISTERED[1][1]),  # earliest created_at
        ("dmm:reg002", REGISTERED[4][0], REGISTERED[4][1]),  # same time: smallest id
    ]
    henry = rows(
        spellings,
        "select cast(video_id as varchar) from interactions where user_id = 'henry' order by 1",
    )
    assert henry == [(REGISTERED[4][0],), (REGISTERED[1][0],)]
    assert rows(spellings, "select count(*) from videos")[0][0] == len(REGISTERED)  # untouched


def test_a_cid_on_another_host_cannot_claim_a_dmm_product(tmp_path: Path) -> None:
    # Five lines on a foreign host that carry a registered product's cid: before, each became
    # dmm:reg001 (outnumbering its one real review) and could rename the product. Now only DMM
    # hosts give dmm: keys; the foreign page is a video of its own and the registered one keeps
    # its URL and its single reviewer.
    registered = ("22222222-0000-4000-8000-000000000001", f"{DMM}reg001/", "2024-01-01")
    lines = ["product_url,reviewer_id,stars", f"{DMM}reg001/,henry,5"] + [
        f"https://evil.example/x?cid=reg001,mallory{i},5" for i in range(5)
    ]
    csv, db = tmp_path / "reviews.csv", tmp_path / "warehouse.duckdb"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with DuckDBWarehouse(db) as warehouse:
        warehouse.ensure_app_schema()
        warehouse.con.execute(
            "insert into videos (id, product_url, created_at) values (?, ?, ?)", list(registered)
        )
    build_duckdb(csv, db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        catalog = rows(
            con,
            "select product_key, product_url, is_registered from int_video_catalog order by 1",
        )
        assert catalog == [
            ("dmm:reg001", registered[1], True),
            ("evil.example/x", "https://evil.example/x?cid=reg001", False),
        ]
        reviewers = rows(
            con,
            "select user_id from interactions "
            f"where cast(video_id as varchar) = '{registered[0]}' order by 1",
        )
        assert reviewers == [("henry",)]
        assert rows(con, f"select product_url from videos where id = '{registered[0]}'") == [
            (registered[1],)
        ]
    finally:
        con.close()
