"""Records whose quoted fields hold line breaks (RFC 4180) go through dbt on both engines alike,
and every physical line stays accounted for: a record covers line_number .. last_line_number in
raw, and its mart row or reject covers the same lines (assert_every_line_accounted_for)."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from tests.support.pg_server import PgServer
from tests.support.warehouses import build_duckdb, build_postgres
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse

URL = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid={cid}/"
BODY = (
    f'{URL.format(cid="a1")},"alice\n",5\n'  # 2-3: the line break is trimmed like a space
    f'"{URL.format(cid="a2")}\r\n",bob,4\r\n'  # 4-5: in the URL, CRLF
    f'{URL.format(cid="a3")},"dave\nsmith",9\n'  # 6-7: kept together, then stars_out_of_range
    f"{URL.format(cid='a4')},erin,5\n"  # 8
    f'{URL.format(cid="a5")},"frank,4\n'  # 9: a quote still open at the end of the file
)
EXPECTED = {  # first line -> (last line, reject reason or None for kept)
    2: (3, None),
    4: (5, None),
    6: (7, "stars_out_of_range"),
    8: (8, None),
    9: (9, "unclosed_quote"),
}
KEPT = "select source_line_number, user_id, product_key, stars from interactions order by 1"


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "multiline.csv"
    path.write_bytes(("product_url,reviewer_id,stars\n" + BODY).encode())
    return path


def _placed(warehouse) -> dict[int, tuple[int, str | None]]:
    spans = warehouse.read(
        "select line_number, last_line_number from raw.reviews union all "
        "select line_number, last_line_number from raw.load_rejects"
    )
    last = dict(spans.iter_rows())
    kept = warehouse.read("select source_line_number as line from interactions")["line"]
    rejects = warehouse.read("select line_number, reason from review_rejects")
    out = {line: (last[line], None) for line in kept}
    out.update({line: (last[line], reason) for line, reason in rejects.iter_rows()})
    return out


def test_duckdb_keeps_multi_line_records_whole_and_accounts_for_every_line(
    tmp_path: Path,
) -> None:
    target = build_duckdb(_csv(tmp_path), tmp_path / "w.duckdb")  # its data tests pass
    with DuckDBWarehouse(target.duckdb_path, read_only=True) as wh:
        assert _placed(wh) == EXPECTED
        assert wh.read(KEPT)["user_id"].to_list() == ["alice", "bob", "erin"]
        assert (
            wh.read("select raw_reviewer_id from stg_reviews where line_number = 6").item()
            == "dave\nsmith"
        )


@pytest.mark.postgres
def test_postgres_reads_the_same_records(
    pg_env: PgServer, dbt_scratch: Path, tmp_path: Path
) -> None:
    duck = build_duckdb(_csv(tmp_path), tmp_path / "w.duckdb")
    target = build_postgres(pg_env, _csv(tmp_path), "multiline_parity")
    with (
        PostgresWarehouse.from_target(target) as pg,
        DuckDBWarehouse(duck.duckdb_path, read_only=True) as dk,
    ):
        assert _placed(pg) == EXPECTED
        assert_frame_equal(pg.read(KEPT), dk.read(KEPT), check_dtypes=False)
        rejects = "select line_number, stage, reason from review_rejects order by 1"
        assert_frame_equal(pg.read(rejects), dk.read(rejects), check_dtypes=False)
        raw = "select line_number, last_line_number, reviewer_id from raw.reviews order by 1"
        assert_frame_equal(pg.read(raw), dk.read(raw), check_dtypes=False)
