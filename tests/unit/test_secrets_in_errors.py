"""Secrets and raw reviewer ids never reach an error message: each case plants a marker where a
careless message would quote it, and the marker must not appear in what the user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.backends.postgres import connection_settings
from trainer.backends.profiles import load_target
from trainer.cli import main
from trainer.errors import UserError
from trainer.release.storage import store_from_env

MARKER = "Mk7q9zSecret"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{MARKER}%zz@db.example:5432/postgres",  # a bad percent escape
        f"postgresql://app:{MARKER} x@db.example:5432/postgres",  # a space
        f"postgresql://app:p@ss{MARKER}%@db.example/postgres",  # '@' inside the password
    ],
)
def test_a_malformed_database_url_is_reported_without_its_password(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(UserError, match="not a valid Postgres connection string") as info:
        connection_settings(load_target("postgres"))
    assert MARKER not in str(info.value)
    assert main(["sql", "select 1", "--target", "postgres"]) == 2
    out = capsys.readouterr()
    assert "not a valid Postgres connection string" in out.err
    assert MARKER not in out.err + out.out


def test_a_supabase_url_with_userinfo_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env = {
        "SUPABASE_URL": f"https://user:{MARKER}@abc.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "k",
    }
    with pytest.raises(UserError, match="must not carry a user or password") as info:
        store_from_env(tmp_path, env)
    assert MARKER not in str(info.value)


def test_a_file_without_a_header_does_not_quote_its_first_review(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "reviews.csv"
    csv.write_text(f"https://www.dmm.co.jp/-/detail/=/cid=abc/,{MARKER},5\n")
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("REVIEWER_ID_HMAC_KEY", "k" * 32)
    assert main(["load", str(csv), "--anonymize"]) == 2
    out = capsys.readouterr()
    assert "wrong header" in out.err and "missing product_url, reviewer_id, stars" in out.err
    assert MARKER not in out.err + out.out
