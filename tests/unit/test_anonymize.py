"""Reviewer anonymization: keyed, stable, trimmed like staging, and the marts see only hashes."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from tests.support.warehouses import duckdb_target
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.anonymize import (
    KEY_VARIABLE,
    REDACTED_LINE,
    anonymize_load,
    key_from_env,
    reviewer_hash,
)
from trainer.ingest.load import parse_reviews_csv
from trainer.transform.dbt import run_dbt

KEY = b"a-test-key-of-32-bytes-0123456789"
RAW_ID = re.compile(r"rv\d")  # every synthetic reviewer id, dirty spellings included


def test_the_key_comes_from_the_environment_or_the_option_fails_clearly() -> None:
    with pytest.raises(UserError, match=KEY_VARIABLE):
        key_from_env({})
    with pytest.raises(UserError, match="at least 16"):
        key_from_env({KEY_VARIABLE: "short"})
    assert key_from_env({KEY_VARIABLE: KEY.decode()}) == KEY


def test_load_without_the_secret_is_a_clear_error_and_writes_nothing(
    synth_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    assert main(["load", str(synth_csv), "--anonymize"]) == 2
    assert KEY_VARIABLE in capsys.readouterr().err
    assert not (tmp_path / "w.duckdb").exists()


def test_hashes_are_keyed_stable_and_follow_stagings_trim(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text(
        "product_url,reviewer_id,stars\n"
        "https://x.example/a,alice,5\n"
        "https://x.example/b, alice ,4\n"  # staging trims: the same reviewer
        "https://x.example/c,bob,3\n"
        "https://x.example/d,   ,3\n"  # empty after trim: still missing_reviewer_id
        "https://x.example/e,carol\n"  # ragged: text redacted, reason kept
    )
    load = parse_reviews_csv(csv)
    once, twice = anonymize_load(load, KEY), anonymize_load(load, KEY)
    other = anonymize_load(load, b"another-key-of-enough-bytes-000")
    ids = once.reviews.column("reviewer_id").to_pylist()
    assert ids == twice.reviews.column("reviewer_id").to_pylist()  # stable across runs
    assert ids[0] == ids[1] == reviewer_hash(KEY, "alice") and len(ids[0]) == 32
    assert ids[2] != ids[0] and ids[3] == ""
    assert other.reviews.column("reviewer_id").to_pylist()[0] != ids[0]  # keyed
    assert once.rejects.column("reason").to_pylist() == ["ragged_line"]
    assert once.rejects.column("raw_line").to_pylist() == [REDACTED_LINE]
    assert once.rejects.column("line_number").to_pylist() == [6]
    # everything else is untouched
    assert once.reviews.drop(["reviewer_id"]).equals(load.reviews.drop(["reviewer_id"]))


def test_anonymized_marts_match_the_plain_ones_up_to_the_renaming(
    synth_csv: Path, synth_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY.decode())
    db = tmp_path / "anon.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    assert main(["load", str(synth_csv), "--anonymize"]) == 0
    run_dbt(duckdb_target(db), "build", quiet=True)
    plain = duckdb.connect(str(synth_warehouse), read_only=True)
    anon = duckdb.connect(str(db), read_only=True)
    try:
        for table in ("interactions", "interaction_splits", "negative_samples", "review_rejects"):
            assert count(anon, table) == count(plain, table), table
        mapping = dict(
            anon.execute(
                "select distinct p.reviewer_id, a.user_id from interactions as a "
                "join (select line_number, reviewer_id from raw.reviews) as p "
                "on p.line_number = a.source_line_number"
            ).fetchall()
        )
        # raw.reviews holds the hashes already: staging only trims them
        assert mapping and all(k == v and len(k) == 32 for k, v in mapping.items())
        users_plain = plain.execute("select count(distinct user_id) from interactions").fetchone()
        users_anon = anon.execute("select count(distinct user_id) from interactions").fetchone()
        assert users_plain == users_anon
        for table in ("interactions", "interaction_splits", "review_rejects", "stg_reviews"):
            text = anon.execute(f"select * from {table}").fetchall()
            assert not RAW_ID.search(repr(text)), table
        rejects = anon.execute("select raw_line from raw.load_rejects").fetchall()
        assert rejects and {r[0] for r in rejects} == {REDACTED_LINE}
    finally:
        plain.close()
        anon.close()


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]
