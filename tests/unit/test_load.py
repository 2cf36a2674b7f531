"""The loader: every line is a raw row or a load reject; unusable files are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.backends.duckdb import DuckDBWarehouse
from trainer.errors import UserError
from trainer.ingest.load import load_reviews, parse_reviews_csv

HEADER = b"product_url,reviewer_id,stars\n"


def write(tmp_path: Path, body: bytes, name: str = "reviews.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


def test_each_unparseable_line_is_rejected_with_its_line_number(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + b"https://x.jp/cid=a1/,r1,5\n"  # line 2: fine
        + b"https://x.jp/cid=a1/,r1,5,extra\n"  # 3: ragged
        + b"https://x.jp/cid=a1/,r1\n"  # 4: ragged
        + "https://x.jp/cid=a1/,レビュアー,4\n".encode("shift_jis")  # 5: undecodable
        + b"\n"  # 6: blank
        + b'https://x.jp/cid=a1/,"r, with comma",4\r\n'  # 7: quoted comma, CRLF: fine
        + b'https://x.jp/cid=a1/,"r"1",4\n'  # 8: broken quoting
        + b"https://x.jp/cid=a1/,r\x002,4\n",  # 9: NUL byte
    )
    parsed = parse_reviews_csv(path)
    rows = parsed.reviews.to_pylist()
    rejects = {r["line_number"]: r["reason"] for r in parsed.rejects.to_pylist()}
    assert [r["line_number"] for r in rows] == [2, 7]
    assert rows[1]["reviewer_id"] == "r, with comma"
    assert rejects == {
        3: "ragged_line",
        4: "ragged_line",
        5: "undecodable",
        6: "blank_line",
        8: "ragged_line",
        9: "undecodable",
    }
    assert parsed.data_lines == len(rows) + len(rejects) == 8


def test_header_columns_may_come_in_any_order_and_with_a_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfstars,Product_URL,reviewer_id\n5,https://x.jp/cid=a/,r1\n")
    row = parse_reviews_csv(path).reviews.to_pylist()[0]
    assert row == {
        "line_number": 2,
        "product_url": "https://x.jp/cid=a/",
        "reviewer_id": "r1",
        "stars": "5",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "not found"),
        (b"", "is empty"),
        (b"url,user,rating\nhttps://x.jp/,r1,5\n", "wrong header"),
        (HEADER, "no review lines"),
    ],
)
def test_unusable_files_are_clear_errors(tmp_path: Path, body: bytes | None, message: str) -> None:
    path = tmp_path / "reviews.csv" if body is None else write(tmp_path, body)
    with pytest.raises(UserError, match=message):
        parse_reviews_csv(path)


def test_loading_the_same_file_twice_replaces_it(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + b"https://x.jp/cid=a/,r1,5\nbad line\n")
    db = tmp_path / "w.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_reviews(warehouse, path)
        load_reviews(warehouse, path)
        counts = warehouse.read(
            "select (select count(*) from raw.reviews) as reviews, "
            "(select count(*) from raw.load_rejects) as rejects, "
            "(select count(*) from raw.loads) as loads"
        ).row(0)
    assert counts == (1, 1, 1)


SJIS_LINES = [
    "https://x.jp/cid=a1/,レビュアー,4",
    "https://x.jp/cid=a2/,山田,5",
    "https://x.jp/cid=a3/,r3,3",
]


def test_gzip_and_zstd_files_load_as_their_plain_text(tmp_path: Path) -> None:
    import gzip

    import pyarrow as pa

    body = HEADER + b"https://x.jp/cid=a1/,r1,5\nhttps://x.jp/cid=a2/,r2,4\nbad line\n"
    plain = parse_reviews_csv(write(tmp_path, body))
    zipped = write(tmp_path, gzip.compress(body), "reviews.csv.gz")
    zstd = tmp_path / "reviews.zst"
    with pa.output_stream(str(zstd), compression="zstd") as out:
        out.write(body)
    misnamed = write(tmp_path, gzip.compress(body), "reviews.csv")  # told by bytes, not name
    for path in (zipped, zstd, misnamed):
        parsed = parse_reviews_csv(path)
        assert parsed.reviews.equals(plain.reviews) and parsed.rejects.equals(plain.rejects)
        assert parsed.sha256 == plain.sha256 and parsed.data_lines == 3
    truncated = write(tmp_path, gzip.compress(body * 2000)[:-40], "cut.csv.gz")
    with pytest.raises(UserError, match="cannot read this gzip to its end"):
        parse_reviews_csv(truncated)


def test_a_cp932_scrape_gets_a_hint_then_loads_with_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\n".join(SJIS_LINES).encode("cp932") + b"\n")
    guessed = parse_reviews_csv(path)
    assert [r["reason"] for r in guessed.rejects.to_pylist()] == ["undecodable"] * 2
    assert guessed.notes and "--encoding cp932" in guessed.notes[0]
    assert "2 lines" in guessed.notes[0]
    right = parse_reviews_csv(path, "cp932")
    assert [r["reviewer_id"] for r in right.reviews.to_pylist()] == ["レビュアー", "山田", "r3"]
    assert right.rejects.num_rows == 0 and not right.notes
    clean = parse_reviews_csv(write(tmp_path, HEADER + b"https://x.jp/cid=a/,r,5\n", "ok.csv"))
    assert not clean.notes  # nothing undecodable, nothing to say
    with pytest.raises(UserError, match="unknown --encoding"):
        parse_reviews_csv(path, "klingon")
    with pytest.raises(UserError, match="ASCII-compatible"):
        parse_reviews_csv(path, "utf-16")


def test_an_unreadable_file_is_one_clear_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import os

    from trainer.cli import main

    path = write(tmp_path, HEADER + b"https://x.jp/cid=a/,r,5\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: the OS refusal, as open() raises it
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    assert main(["load", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {path}: Permission denied" in err and "Traceback" not in err
