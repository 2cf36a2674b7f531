"""Values too long for Postgres's btree keys are rejects with a reason, the same on both engines,
instead of one line stopping `dbt build` on Postgres while DuckDB accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pg_server import PgServer
from tests.support.warehouses import build_duckdb, build_postgres
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.backends.postgres import PostgresWarehouse

URL = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid={cid}/"
# (line in the file, CSV line, expected reject reason or None for kept)
LINES = [
    (2, URL.format(cid="ok1") + ",alice,5", None),
    (
        3,
        URL.format(cid="ok2") + "?q=" + "x" * (2048 - len(URL.format(cid="ok2")) - 3) + ",bob,4",
        None,
    ),  # exactly 2,048 bytes
    (4, URL.format(cid="long1") + "?q=" + "x" * 3000 + ",carol,5", "product_url_too_long"),
    # 700 three-byte characters: 2,100 bytes though only about 760 characters
    (5, URL.format(cid="long2") + "?q=" + "日" * 700 + ",dave,5", "product_url_too_long"),
    (6, URL.format(cid="ok3") + "," + "r" * 256 + ",3", None),  # a 256-byte id is fine
    (7, URL.format(cid="ok4") + "," + "r" * 257 + ",4", "reviewer_id_too_long"),
]


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "long.csv"
    rows = [line for _, line, _ in LINES]
    path.write_text("product_url,reviewer_id,stars\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _reasons(warehouse) -> dict[int, str | None]:
    kept = warehouse.read("select source_line_number as line from interactions")["line"]
    rejects = warehouse.read("select line_number, reason from review_rejects")
    out: dict[int, str | None] = dict.fromkeys(kept.to_list())
    out.update(zip(rejects["line_number"], rejects["reason"], strict=True))
    return out


EXPECTED = {line: reason for line, _, reason in LINES}


def test_duckdb_rejects_over_long_urls_and_ids_by_bytes(tmp_path: Path) -> None:
    target = build_duckdb(_csv(tmp_path), tmp_path / "w.duckdb")
    with DuckDBWarehouse(target.duckdb_path, read_only=True) as wh:
        assert _reasons(wh) == EXPECTED


@pytest.mark.postgres
def test_postgres_builds_and_rejects_the_same_lines(
    pg_env: PgServer, dbt_scratch: Path, tmp_path: Path
) -> None:
    # dbt build raised on the btree limit before the rule
    target = build_postgres(pg_env, _csv(tmp_path), "long_values")
    with PostgresWarehouse.from_target(target) as wh:
        assert _reasons(wh) == EXPECTED
