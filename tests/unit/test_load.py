"""The loader: every line is a raw row or a load reject; unusable files are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.backends.duckdb import DuckDBWarehouse
from trainer.errors import UserError
from trainer.ingest.load import MAX_RECORD_LINES, load_reviews, parse_reviews_csv

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


def covered(parsed) -> list[int]:
    """Every physical line the rows and rejects cover, in order (with repeats, if any)."""
    spans = [*parsed.reviews.to_pylist(), *parsed.rejects.to_pylist()]
    return sorted(n for r in spans for n in range(r["line_number"], r["last_line_number"] + 1))


def test_a_quoted_field_may_span_lines_as_rfc_4180_allows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + b'https://x.jp/cid=a1/,"first\nsecond",5\n'  # lines 2-3: one record
        + b'https://x.jp/cid=a2/,"crlf\r\nand ""quotes""\r\n\r\nend",4\r\n'  # 4-7
        + b"https://x.jp/cid=a3/,r3,3\n"  # 8
        + b'https://x.jp/cid=a4/,"two\nlines",5,extra\n',  # 9-10: one ragged record
    )
    parsed = parse_reviews_csv(path)
    rows = parsed.reviews.to_pylist()
    assert [(r["line_number"], r["last_line_number"], r["reviewer_id"]) for r in rows] == [
        (2, 3, "first\nsecond"),
        (4, 7, 'crlf\nand "quotes"\n\nend'),
        (8, 8, "r3"),
    ]
    assert parsed.rejects.to_pylist() == [
        {
            "line_number": 9,
            "last_line_number": 10,
            "reason": "ragged_line",
            "raw_line": 'https://x.jp/cid=a4/,"two\nlines",5,extra',
        }
    ]
    assert parsed.data_lines == 9 and covered(parsed) == list(range(2, 11))


def test_a_stray_quote_rejects_its_line_alone_and_the_next_lines_are_read(tmp_path: Path) -> None:
    good = [f"https://x.jp/cid=b{i}/,r{i},4\n".encode() for i in range(MAX_RECORD_LINES + 2)]
    path = write(
        tmp_path,
        HEADER
        + b'https://x.jp/cid=s1/,"stray,5\n'  # 2: never closes within MAX_RECORD_LINES
        + b"".join(good)  # 3 .. 14
        + b'https://x.jp/cid=s2/,"open\n'  # 15: closes only at 16, a ragged record
        + "https://x.jp/cid=s3/,レビュアー,4\n".encode("shift_jis")  # 16: undecodable stops it
        + b'https://x.jp/cid=s4/,"at the end,5\n',  # 17: still open at the end of the file
    )
    parsed = parse_reviews_csv(path)
    rejects = {
        r["line_number"]: (r["last_line_number"], r["reason"]) for r in parsed.rejects.to_pylist()
    }
    assert rejects == {
        2: (2, "unclosed_quote"),
        15: (15, "unclosed_quote"),
        16: (16, "undecodable"),
        17: (17, "unclosed_quote"),
    }
    assert [r["line_number"] for r in parsed.reviews.to_pylist()] == list(range(3, 15))
    assert parsed.data_lines == 16 and covered(parsed) == list(range(2, 18))


def test_a_record_spans_at_most_max_record_lines(tmp_path: Path) -> None:
    fits = "\n".join(["y"] * MAX_RECORD_LINES)  # a record of MAX_RECORD_LINES lines
    inner = "\n".join(["x"] * (MAX_RECORD_LINES + 1))  # one line more: too long
    path = write(
        tmp_path,
        HEADER + f'https://x.jp/cid=a/,"{fits}",5\nhttps://x.jp/cid=b/,"{inner}",5\n'.encode(),
    )
    parsed = parse_reviews_csv(path)
    first = parsed.reviews.to_pylist()[0]
    assert (first["line_number"], first["last_line_number"]) == (2, 1 + MAX_RECORD_LINES)
    rejects = parsed.rejects.to_pylist()
    start = 2 + MAX_RECORD_LINES
    assert (rejects[0]["line_number"], rejects[0]["reason"]) == (start, "unclosed_quote")
    assert covered(parsed) == list(range(2, parsed.data_lines + 2))


def test_header_columns_may_come_in_any_order_and_with_a_bom(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfstars,Product_URL,reviewer_id\n5,https://x.jp/cid=a/,r1\n")
    row = parse_reviews_csv(path).reviews.to_pylist()[0]
    assert row == {
        "line_number": 2,
        "last_line_number": 2,
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
