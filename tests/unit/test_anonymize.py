"""Reviewer anonymization: keyed, stable, trimmed like staging, and the marts see only hashes."""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.support.warehouses import duckdb_target, output_flags
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


def hmac_sha256_32(key: bytes, reviewer_id: str) -> str:
    """The documented hash, computed here without the module: the first 32 hex digits of
    HMAC-SHA256(key, id trimmed of spaces); an id empty after trimming stays empty."""
    trimmed = reviewer_id.strip(" ")
    if not trimmed:
        return ""
    return hmac.new(key, trimmed.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def raw_reviewer_ids(path: Path) -> dict[int, str]:
    """{line number: reviewer_id field} of every line of the CSV that splits into 3 fields."""
    ids = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        lines = handle.read().split("\n")
    assert lines[0].strip() == "product_url,reviewer_id,stars"
    for number, line in enumerate(lines[1:], start=2):
        try:
            fields = next(csv.reader([line.rstrip("\r")], strict=True), [])
        except csv.Error:
            continue
        if len(fields) == 3:
            ids[number] = fields[1]
    return ids


def test_anonymized_marts_match_the_plain_ones_up_to_the_renaming(
    synth_csv: Path, synth_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY.decode())
    db = tmp_path / "anon.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt" / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt" / "logs"))
    assert main(["load", str(synth_csv), "--anonymize"]) == 0
    run_dbt(duckdb_target(db), "build", quiet=True)
    raw = raw_reviewer_ids(synth_csv)
    plain = duckdb.connect(str(synth_warehouse), read_only=True)
    anon = duckdb.connect(str(db), read_only=True)
    try:
        # every loaded row, joined to the CSV by its line number, holds HMAC(key, raw id)
        loaded = anon.execute("select line_number, reviewer_id from raw.reviews").fetchall()
        assert len(loaded) > 7_000
        for line, reviewer in loaded:
            assert reviewer == hmac_sha256_32(KEY, raw[line]), line
        # every interaction too: user_id = HMAC(key, the reviewer id on its source line)
        users = anon.execute("select source_line_number, user_id from interactions").fetchall()
        assert len(users) > 5_000
        for line, user in users:
            assert len(user) == 32 and user == hmac_sha256_32(KEY, raw[line]), line
        # the marts are the plain ones with user_id renamed: row for row, every column
        columns = "user_id, cast(video_id as varchar), product_key, stars, label, weight, "
        columns += "source_line_number"
        renamed = sorted(
            (hmac_sha256_32(KEY, row[0]), *row[1:])
            for row in plain.execute(f"select {columns} from interactions").fetchall()
        )
        assert renamed == sorted(anon.execute(f"select {columns} from interactions").fetchall())
        rejects = "select reviewer_id, line_number, reason, product_url from review_rejects"
        assert sorted(
            (hmac_sha256_32(KEY, row[0] or ""), *row[1:])
            for row in plain.execute(rejects).fetchall()
        ) == sorted((row[0] or "", *row[1:]) for row in anon.execute(rejects).fetchall())
        # splits and negatives are drawn from md5(seed | user | ...): other draws, same sizes
        per_user = (
            "select user_id, count(*) filter (where split = 'valid'), count(*) "
            "from interaction_splits group by user_id"
        )
        assert sorted(
            (hmac_sha256_32(KEY, u), *rest) for u, *rest in plain.execute(per_user).fetchall()
        ) == sorted(tuple(r) for r in anon.execute(per_user).fetchall())
        assert count(anon, "negative_samples") == count(plain, "negative_samples")
        for table in ("interactions", "interaction_splits", "review_rejects", "stg_reviews"):
            text = anon.execute(f"select * from {table}").fetchall()
            assert not RAW_ID.search(repr(text)), table
        rejects = anon.execute("select raw_line from raw.load_rejects").fetchall()
        assert rejects and {r[0] for r in rejects} == {REDACTED_LINE}
    finally:
        plain.close()
        anon.close()


MARKER = "marker-key-7f3a9c2e51d04b68-do-not-leak"


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under root whose bytes contain needle (as UTF-8, or as its hex spelling)."""
    forms = (needle.encode(), needle.encode().hex().encode())
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and any(form in path.read_bytes() for form in forms)
    )


def test_the_key_never_reaches_sql_dbts_files_the_database_or_the_artifacts(
    synth_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """An anonymized pipeline run (load, dbt build, train, publish) with a recognisable key:
    no file it wrote (the DuckDB file, dbt's target/ and logs/, the store, the outputs, the job
    summary), nor its output, holds the key."""
    run = tmp_path / "run"
    monkeypatch.setenv(KEY_VARIABLE, MARKER)
    monkeypatch.setenv("DUCKDB_PATH", str(run / "warehouse.duckdb"))
    monkeypatch.setenv("DBT_TARGET_PATH", str(run / "dbt" / "target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(run / "dbt" / "logs"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(run / "summary.md"))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    flags = ["--anonymize", "--epochs", "2", "--embedding-dim", "8", "--quiet"]
    flags += ["--force", "--reason", "key leak test", *output_flags(run)]
    assert main(["pipeline", str(synth_csv), *flags]) == 0
    printed = capsys.readouterr()
    # the run wrote what is scanned below
    dbt_files = {p.relative_to(run).parts[:2] for p in (run / "dbt").rglob("*") if p.is_file()}
    assert {("dbt", "target"), ("dbt", "logs")} <= dbt_files
    assert (run / "dbt" / "logs" / "dbt.log").stat().st_size > 0
    assert any((run / "dbt" / "target").rglob("*.sql"))  # compiled SQL
    assert (run / "warehouse.duckdb").stat().st_size > 0
    assert {p.name for p in (run / "store").iterdir()} >= {"two_tower_latest.safetensors"}
    with duckdb.connect(str(run / "warehouse.duckdb"), read_only=True) as con:
        published = count(con, "user_embeddings")
        hashed = con.execute("select count(*) from raw.reviews where length(reviewer_id) = 32")
        assert published > 0 and hashed.fetchone()[0] > 7_000  # it ran anonymized, to the end
    assert files_holding(run, MARKER) == []
    assert MARKER not in printed.out + printed.err
    # the scan would have seen it: in a file, and in a table of a copy of the database
    (run / "dbt" / "logs" / "planted.log").write_text(f"key={MARKER}\n")
    copy = tmp_path / "planted.duckdb"
    shutil.copy(run / "warehouse.duckdb", copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("create table planted as select ? as key", [MARKER])
        con.execute("checkpoint")
    assert files_holding(run, MARKER) == ["dbt/logs/planted.log"]
    assert files_holding(tmp_path, MARKER) == ["planted.duckdb", "run/dbt/logs/planted.log"]


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]
