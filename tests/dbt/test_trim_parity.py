"""Fields are trimmed of one set of characters (dbt var trim_codepoints) on both engines and by
the anonymizer: before, Postgres trimmed only U+0020 and DuckDB the Unicode spaces but not tabs,
so `"4\u3000"` was 4 stars on one engine and `stars_not_numeric` on the other."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.support.pg_server import PgServer
from tests.support.warehouses import build_duckdb, build_postgres
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse
from trainer.ingest.anonymize import anonymize_load, trim_characters
from trainer.ingest.load import parse_reviews_csv

URL = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid={cid}/"
IDEOGRAPHIC, NBSP, TAB = "\u3000", "\u00a0", "\t"
LINES = [  # all of these are one reviewer "alice" with valid stars
    f"{URL.format(cid='a1')},alice,4{IDEOGRAPHIC}",
    f"{NBSP}{URL.format(cid='a2')},{TAB}alice,{TAB}5",
    f"{URL.format(cid='a3')}{IDEOGRAPHIC},alice{IDEOGRAPHIC},3",
    f"{URL.format(cid='a1')},bob{NBSP},{NBSP}4{NBSP}",
    f"{URL.format(cid='a2')},bob,\u20035",
]
EXPECTED = {  # (reviewer, video key) -> stars
    ("alice", "dmm:a1"): 4,
    ("alice", "dmm:a2"): 5,
    ("alice", "dmm:a3"): 3,
    ("bob", "dmm:a1"): 4,
    ("bob", "dmm:a2"): 5,
}
QUERY = "select user_id, product_key, stars from interactions order by user_id, product_key"


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "spaces.csv"
    path.write_text("product_url,reviewer_id,stars\n" + "\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _as_dict(frame: pl.DataFrame) -> dict:
    return {(u, k): s for u, k, s in frame.iter_rows()}


def test_duckdb_trims_unicode_spaces_and_tabs_alike(tmp_path: Path) -> None:
    target = build_duckdb(_csv(tmp_path), tmp_path / "w.duckdb")
    with DuckDBWarehouse(target.duckdb_path, read_only=True) as wh:
        assert _as_dict(wh.read(QUERY)) == EXPECTED
        assert wh.read("select count(*) as n from review_rejects")["n"][0] == 0


def test_the_anonymizer_trims_what_staging_trims(tmp_path: Path) -> None:
    key = b"k" * 32
    load = anonymize_load(parse_reviews_csv(_csv(tmp_path)), key)

    def expected(raw: str) -> str:
        return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()[:32]

    ids = load.reviews.column("reviewer_id").to_pylist()
    assert ids == [expected("alice")] * 3 + [expected("bob")] * 2
    assert set(trim_characters()) >= {" ", TAB, IDEOGRAPHIC, NBSP, "\u2003"}


@pytest.mark.postgres
def test_postgres_gives_the_same_interactions(
    pg_env: PgServer, dbt_scratch: Path, tmp_path: Path
) -> None:
    duck = build_duckdb(_csv(tmp_path), tmp_path / "w.duckdb")
    target = build_postgres(pg_env, _csv(tmp_path), "trim_parity")
    with (
        PostgresWarehouse.from_target(target) as pg,
        DuckDBWarehouse(duck.duckdb_path, read_only=True) as dk,
    ):
        assert_frame_equal(pg.read(QUERY), dk.read(QUERY), check_dtypes=False)
        assert _as_dict(pg.read(QUERY)) == EXPECTED
