"""COPY load, polars reads, `dbt build --target postgres`, DuckDB/Postgres parity row for row."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import polars.selectors as cs
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from tests.support.datasets import EDGE_CASE_LINES, EDGE_CASE_REJECTS
from tests.support.pg_server import PgServer
from tests.support.warehouses import build_duckdb, build_postgres, duckdb_target
from trainer.backends.base import RawLoad
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse
from trainer.backends.profiles import Target, load_target
from trainer.ingest.load import load_reviews
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.ml.data import read_dataset
from trainer.transform.dbt import PROJECT_DIR, run_dbt

# The app's tables are in `public` on Postgres, the marts in PGSCHEMA (recsys).
PG_VARS: dict = {}  # app tables default to public on Postgres (see _sources.yml)
REGISTERED_ID = "11111111-2222-4333-8444-555555555555"


@dataclass
class Built:
    duck: DuckDBWarehouse
    pg: PostgresWarehouse
    pg_target: Target
    csv: Path
    registered_url: str


def _registered_spelling(csv: Path) -> str:
    """Another spelling of the first product in the file (http, tracking query string)."""
    for line in csv.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        url = line.split(",")[0]
        if "cid=" in url and url.startswith("https://"):
            return "http://" + url.removeprefix("https://").rstrip("/") + "/?i3_ref=app"
    raise AssertionError("no DMM url in the synthetic file")


@pytest.fixture(scope="module")
def built(
    pg_env: PgServer,
    dbt_scratch: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """The same synthetic CSV through loader + dbt on DuckDB and on Postgres, with one video
    registered by the app beforehand (spelled differently from the reviews) on both."""
    work = tmp_path_factory.mktemp("parity")
    csv = work / "reviews.csv"
    write_synthetic_csv(csv, SynthConfig(reviews=5_000, seed=11))
    url = _registered_spelling(csv)

    duck_target = Target("duckdb", "duckdb", "main", {"path": str(work / "warehouse.duckdb")})
    duck = DuckDBWarehouse(duck_target.duckdb_path)
    duck.ensure_app_schema()
    duck.execute(f"insert into videos (id, product_url) values ('{REGISTERED_ID}', '{url}')")
    load_reviews(duck, csv)
    duck.close()  # dbt opens the file itself
    run_dbt(duck_target, "build", quiet=True)
    duck = DuckDBWarehouse(duck_target.duckdb_path, read_only=True)

    pg_env.database("dbt_tests")
    pg_target = load_target("postgres")
    pg = PostgresWarehouse.from_target(pg_target)
    pg.ensure_app_schema()
    pg.execute(f"insert into videos (id, product_url) values ('{REGISTERED_ID}', '{url}')")
    load_reviews(pg, csv)
    run_dbt(pg_target, "build", quiet=True, variables=PG_VARS)
    yield Built(duck, pg, pg_target, csv, url)
    duck.close()
    pg.close()


# -- load and read ----------------------------------------------------------------------------
def test_copy_load_replaces_raw_tables(built: Built) -> None:
    pg = built.pg
    loads = pg.read("select * from raw.loads")
    assert loads.height == 1
    reviews = pg.read("select count(*) as n from raw.reviews")["n"][0]
    rejects = pg.read("select count(*) as n from raw.load_rejects")["n"][0]
    assert loads["parsed_rows"][0] == reviews and loads["rejected_lines"][0] == rejects
    assert loads["data_lines"][0] == reviews + rejects
    duck_raw = built.duck.read("select * from raw.reviews order by line_number")
    pg_raw = pg.read("select * from raw.reviews order by line_number")
    assert_frame_equal(duck_raw, pg_raw, check_dtypes=False)
    assert_frame_equal(
        built.duck.read("select * from raw.load_rejects order by line_number"),
        pg.read("select * from raw.load_rejects order by line_number"),
        check_dtypes=False,
    )


def test_copy_load_keeps_awkward_text_exactly(pg_env: PgServer) -> None:
    pg_env.database("dbt_tests_text", activate=False)
    awkward = ["", " ", '"quoted", comma', "line\\backslash", "\\.", "tab\there", "日本語", "\r"]
    n = len(awkward)
    load = RawLoad(
        reviews=pa.table(
            {
                "line_number": pa.array(range(2, n + 2), pa.int64()),
                "product_url": awkward,
                "reviewer_id": list(reversed(awkward)),
                "stars": ["5"] * n,
            }
        ),
        rejects=pa.table(
            {
                "line_number": pa.array([n + 2], pa.int64()),
                "reason": ["ragged_line"],
                "raw_line": ['a,"b'],
            }
        ),
        source_path="/x.csv",
        sha256="0" * 64,
        data_lines=n + 1,
    )
    with PostgresWarehouse.from_target(pg_env.target("dbt_tests_text")) as pg:
        pg.replace_raw(load)
        pg.replace_raw(load)  # a second load replaces, never appends
        back = pg.read("select * from raw.reviews order by line_number")
        assert back["product_url"].to_list() == awkward
        assert back["reviewer_id"].to_list() == list(reversed(awkward))
        assert pg.read("select raw_line from raw.load_rejects")["raw_line"].to_list() == ['a,"b']


def test_read_returns_typed_polars_frames(built: Built) -> None:
    frame = built.pg.read(
        "select 1::int as i, 2::bigint as b, 0.5::float8 as f, 'NaN'::float8 as nan, "
        "true as t, null::boolean as nb, ''::text as empty, null::text as missing, "
        "1.25::numeric as num, '2024-01-02'::date as d, "
        "'2024-01-02 03:04:05.123456+00'::timestamptz as ts, "
        "'00000000-0000-0000-0000-000000000001'::uuid as u, '[1,2.5]'::vector as v, "
        "'100%' as pct, 'what?' as q, '50%s' as fmt"  # sent as written: no placeholders
    )
    row = frame.row(0, named=True)
    assert row["i"] == 1 and frame.schema["i"] == pl.Int32
    assert row["b"] == 2 and frame.schema["b"] == pl.Int64
    assert row["f"] == 0.5 and row["nan"] != row["nan"]
    assert row["t"] is True and row["nb"] is None and frame.schema["t"] == pl.Boolean
    assert row["empty"] == "" and row["missing"] is None
    assert row["num"] == 1.25
    assert str(row["d"]) == "2024-01-02"
    assert row["ts"].isoformat() == "2024-01-02T03:04:05.123456+00:00"
    assert row["u"] == "00000000-0000-0000-0000-000000000001"
    assert row["v"] == [1.0, 2.5]
    assert row["pct"] == "100%" and row["q"] == "what?" and row["fmt"] == "50%s"
    empty = built.pg.read("select 1 as a, 'x' as b where false")
    assert empty.height == 0 and empty.columns == ["a", "b"]


def test_table_exists_and_read_dataset_match_duckdb(built: Built) -> None:
    assert built.pg.table_exists("interactions")
    assert not built.pg.table_exists("no_such_table")
    duck = read_dataset(built.duck)
    pg = read_dataset(built.pg)
    assert pg.fingerprint == duck.fingerprint
    assert pg.user_ids == duck.user_ids and pg.video_ids == duck.video_ids
    # the same pairs (row order of an unordered query may differ between engines)
    assert _pairs(pg.train_users, pg.train_items) == _pairs(duck.train_users, duck.train_items)
    assert _pairs(*pg.negatives) == _pairs(*duck.negatives)


def _pairs(users, items) -> list[tuple[int, int]]:
    return sorted(zip(users.tolist(), items.tolist(), strict=True))


# -- dbt on Postgres --------------------------------------------------------------------------
def test_dbt_build_passed_and_every_line_is_accounted_for(built: Built) -> None:
    summary = dict(built.pg.read("select metric, value from quality_summary").iter_rows())
    assert summary["file_data_lines"] == summary["interactions"] + summary["rejected_lines"]
    assert summary["negative_samples"] > 0 and summary["valid_positives"] > 0


def test_dbt_registers_nothing_and_marks_the_unregistered_videos(built: Built) -> None:
    pg = built.pg
    catalog = pg.read("select * from video_catalog")
    registered = catalog.filter(pl.col("is_registered"))
    assert registered["video_id"].to_list() == [REGISTERED_ID]
    assert catalog.filter(pl.col("register_at_publish")).height == catalog.height - 1
    videos = pg.read("select cast(id as text) as id, product_url from public.videos")
    assert videos["id"].to_list() == [REGISTERED_ID]  # dbt build wrote nothing to the app
    assert videos["product_url"][0] == built.registered_url
    ingested = dict(pg.read("select metric, value from quality_summary").iter_rows())[
        "videos_ingested"
    ]
    assert ingested == catalog.height - 1


# -- parity: the same CSV gives the same marts on both engines ----------------------------------
PARITY = {
    "interactions": (
        "select user_id, cast(video_id as varchar) as video_id, product_key, stars, label, "
        "weight, source_line_number, source from interactions",
        ["user_id", "video_id"],
    ),
    "interaction_splits": (
        "select user_id, cast(video_id as varchar) as video_id, split, tune "
        "from interaction_splits",
        ["user_id", "video_id"],
    ),
    "negative_samples": (
        "select user_id, cast(video_id as varchar) as video_id, "
        "cast(positive_video_id as varchar) as positive_video_id, negative_rank "
        "from negative_samples",
        ["user_id", "positive_video_id", "negative_rank"],
    ),
    "review_rejects": (
        "select line_number, stage, reason, raw_line, product_url, reviewer_id, stars "
        "from review_rejects",
        ["line_number"],
    ),
    "quality_summary": ("select metric, value from quality_summary", ["metric"]),
    "video_catalog": (
        "select cast(video_id as varchar) as video_id, product_key, product_url, is_registered, "
        "register_at_publish from video_catalog",
        ["video_id"],
    ),
    "quality_rejects_by_reason": (
        "select stage, reason, lines, first_line from quality_rejects_by_reason",
        ["stage", "reason"],
    ),
}


@pytest.mark.parametrize("table", list(PARITY))
def test_duckdb_and_postgres_give_identical_marts(built: Built, table: str) -> None:
    query, keys = PARITY[table]
    duck = built.duck.read(query).sort(keys)
    pg = built.pg.read(query).sort(keys)
    assert duck.height > 0
    assert duck.height == pg.height
    assert_frame_equal(duck, pg, check_dtypes=False)


# The hand-made scrape (every reject reason, URL spellings, duplicates) with unicode reviewer
# ids and Unicode spaces added: the edge cases must agree too, not only a clean synthetic file.
EDGE_EXTRA = [
    "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=abc005/,\u3000ジョン\u3000,5",
    "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=abc001/,ジョン,\u00a04\u00a0",
    "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=abc006/,zoë,★",
]


def test_the_edge_case_file_gives_identical_marts_on_both_engines(
    pg_env: PgServer, dbt_scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # build_postgres points PGDATABASE at its database: the module's `built` keeps its own after
    monkeypatch.setenv("PGDATABASE", os.environ.get("PGDATABASE", "postgres"))
    csv = tmp_path / "edge.csv"
    csv.write_text("\n".join(EDGE_CASE_LINES + EDGE_EXTRA) + "\n", encoding="utf-8")
    duck_target = build_duckdb(csv, tmp_path / "edge.duckdb")
    pg_target = build_postgres(pg_env, csv, "edge_parity")
    with (
        PostgresWarehouse.from_target(pg_target) as pg,
        DuckDBWarehouse(duck_target.duckdb_path, read_only=True) as duck,
    ):
        for table, (query, keys) in PARITY.items():
            ours, theirs = duck.read(query).sort(keys), pg.read(query).sort(keys)
            assert ours.height == theirs.height, table
            assert_frame_equal(ours, theirs, check_dtypes=False)
        rejects = dict(pg.read("select line_number, reason from review_rejects").iter_rows())
        users = set(pg.read("select distinct user_id from interactions")["user_id"])
    extra_reject = len(EDGE_CASE_LINES) + len(EDGE_EXTRA)  # the last line: zoë's ★
    assert rejects == {**EDGE_CASE_REJECTS, extra_reject: "stars_not_numeric"}
    assert "ジョン" in users  # trimmed of U+3000 on both engines, one reviewer


# -- the vector index rules: SQL functions that the publish and the dbt macro both call ---------
def test_the_ann_rules_are_sql_functions_with_the_documented_values(built: Built) -> None:
    rows = [0, 1, 999, 5_000, 10_999, 11_000, 123_456, 999_999, 1_000_000, 1_000_001, 4_000_000]
    selects = ", ".join(
        f"public.ann_ivfflat_lists({r}) as l{i}, "
        f"public.ann_ivfflat_probes(public.ann_ivfflat_lists({r})) as p{i}, "
        f"public.ann_ivfflat_probes(public.ann_ivfflat_lists({r}), 6) as s{i}, "
        f"public.ann_index_memory_mb({r}, 256) as m{i}"
        for i, r in enumerate(rows)
    )
    found = built.pg.read(f"select {selects}, public.ann_hnsw_ef_search() as ef").row(0, named=True)

    def lists(r: int) -> int:  # sql/postgres/003_functions.sql, in words: rows / 1000 up to 1M
        return max(r // 1000 if r <= 1_000_000 else math.isqrt(r), 10)

    def probes(n: int, factor: int) -> int:  # ceil(factor * sqrt(lists)), within [10, lists]
        return min(max(math.ceil(factor * math.sqrt(n)), 10), n)

    for i, r in enumerate(rows):
        assert found[f"l{i}"] == lists(r), r
        assert (found[f"p{i}"], found[f"s{i}"]) == (probes(lists(r), 4), probes(lists(r), 6)), r
        assert found[f"m{i}"] == min(max(r * (256 * 4 + 256) * 2 // 1_048_576 + 1, 64), 2048), r
    assert found["ef"] == 400
    assert (found["l0"], found["l6"], found["l10"]) == (10, 123, 2000)
    assert (probes(107, 4), probes(107, 6)) == (42, 63)  # the README's 107 lists


# (last: it publishes, and changes what quality_summary reports)
def test_the_publish_registers_the_marked_videos_once_and_dbt_then_finds_them(
    built: Built,
) -> None:
    pg = built.pg
    ids = pg.read("select distinct cast(video_id as text) as v from interactions")["v"].to_list()
    vectors = np.eye(len(ids), 8, dtype=np.float32) + 0.1
    catalog = pg.read("select cast(video_id as text) as id, product_url from video_catalog")
    for version in ("first", "again"):  # registering is idempotent
        pg.publish_embeddings((ids, vectors), (["someone"], vectors[:1]), version)
        videos = pg.read("select cast(id as text) as id, product_url from public.videos")
        assert_frame_equal(videos.sort("id"), catalog.sort("id"))
    interactions = pg.read("select count(*) as n from interactions")["n"][0]
    # with its descendants: rebuilding a table on Postgres drops the views that depend on it
    run_dbt(built.pg_target, "run", "--select", "int_video_catalog+", quiet=True, variables=PG_VARS)
    after = pg.read("select cast(id as text) as id, product_url from public.videos")
    assert_frame_equal(after.sort("id"), catalog.sort("id"))
    assert pg.read("select count(*) as n from interactions")["n"][0] == interactions
    summary = dict(pg.read("select metric, value from quality_summary").iter_rows())
    assert summary["videos_ingested"] == 0  # all registered by the publish
    assert pg.read("select count(*) as n from video_catalog where register_at_publish")["n"][0] == 0


# -- the saved analyses (dbt_project/analyses): the same answers on both engines -----------------
def _compiled_analyses(target: Target, scratch: Path) -> dict[str, str]:
    run_dbt(target, "compile", "--select", "resource_type:analysis", quiet=True)
    folder = scratch / "target" / "compiled" / "reviews_two_tower" / "analyses"
    return {path.stem: path.read_text() for path in sorted(folder.glob("*.sql"))}


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Numbers as floats (DuckDB's DECIMAL and Postgres's numeric arrive as different types),
    rows in one order (ties in an analysis's own order may fall either way)."""
    frame = frame.with_columns(cs.numeric().cast(pl.Float64))
    return frame.sort(frame.columns)


def test_the_saved_analyses_give_the_same_answers_on_both_engines(
    built: Built, dbt_scratch: Path
) -> None:
    path = built.duck.path
    built.duck.close()  # dbt opens the file itself
    try:
        duck_sql = _compiled_analyses(duckdb_target(path), dbt_scratch)
    finally:
        built.duck = DuckDBWarehouse(path, read_only=True)
    pg_sql = _compiled_analyses(built.pg_target, dbt_scratch)
    expected = {p.stem for p in (PROJECT_DIR / "analyses").glob("*.sql")}
    assert set(duck_sql) == set(pg_sql) == expected and len(expected) >= 5
    for name in sorted(expected):
        duck, pg = built.duck.read(duck_sql[name]), built.pg.read(pg_sql[name])
        assert duck.height > 0, name
        assert duck.columns == pg.columns, name
        assert_frame_equal(_comparable(duck), _comparable(pg), check_dtypes=False)
