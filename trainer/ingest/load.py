"""CSV -> raw tables. Every line ends up somewhere: a raw row, or a load reject with its reason.

Records follow RFC 4180: a quoted field may hold line breaks, so one record may span several
physical lines; its row carries the first (`line_number`) and the last (`last_line_number`). A
quote still open after MAX_RECORD_LINES lines (or at the end of the file) is a stray quote, not a
field: that first line alone is rejected (`unclosed_quote`) and the lines after it are read again
as records of their own, so one stray quote cannot swallow the rest of the file.

The parser is ours rather than the engine's CSV reader so that DuckDB and Postgres see exactly the
same rows and rejects. Fields stay text here; typing and validation are dbt's job (staging), where
analysts can see and test them.

Input as scrapes arrive: plain, gzip (`.gz`) or zstd (`.zst`), told apart by their first bytes,
not their names; UTF-8 by default, or any ASCII-compatible `encoding` (a Japanese scrape may be
Shift_JIS / CP932). With the default, undecodable lines that read as CP932 add a note that says
so and names the flag. The file's sha256 is of its decompressed bytes.
"""

from __future__ import annotations

import codecs
import collections
import csv
import gzip
import hashlib
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from trainer.backends import RawLoad, Warehouse
from trainer.errors import UserError
from trainer.ingest.anonymize import anonymize_load

EXPECTED_COLUMNS = ("product_url", "reviewer_id", "stars")
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
HINT_ENCODINGS = ("cp932",)  # tried on undecodable lines, to name the --encoding to use
CHUNK = 1 << 20
MAX_RECORD_LINES = 10  # physical lines one record may span (a quoted field's line breaks)

REVIEWS_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("last_line_number", pa.int64()),
        ("product_url", pa.string()),
        ("reviewer_id", pa.string()),
        ("stars", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("last_line_number", pa.int64()),
        ("reason", pa.string()),
        ("raw_line", pa.string()),
    ]
)


def _split(text: str) -> list[str] | None:
    """Fields of one CSV record, or None when quoting is broken."""
    fields, _ = _parse(text)
    return fields


def _parse(text: str) -> tuple[list[str] | None, bool]:
    """(fields or None when quoting is broken, whether the text ends inside a quoted field)."""
    if '"' not in text:
        return text.split(","), False
    try:
        return next(csv.reader([text], strict=True)), False
    except csv.Error as exc:
        return None, "unexpected end of data" in str(exc)
    except StopIteration:
        return None, False


def _header_order(line: bytes, path: Path, encoding: str) -> list[int]:
    """Positions of product_url, reviewer_id, stars in the header (any order, nothing else)."""
    try:
        text = line.removeprefix(BOM).decode(encoding).strip()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the header line is not {encoding} text") from exc
    names = [name.strip().strip('"').lower() for name in (_split(text) or [])]
    if sorted(names) != sorted(EXPECTED_COLUMNS):
        # The first line is not echoed: without a header it is a review, and its reviewer id
        # must not reach a log (with --anonymize, nothing raw may). Name what is missing instead.
        missing = [column for column in EXPECTED_COLUMNS if column not in names]
        raise UserError(
            f"{path}: wrong header ({len(names)} fields; missing "
            f"{', '.join(missing) or 'none, but there are others'}); expected exactly the columns "
            f"{','.join(EXPECTED_COLUMNS)} (is the header line missing?)"
        )
    return [names.index(column) for column in EXPECTED_COLUMNS]


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines (with their line ends), decompressed when it is gzip or zstd."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    kind = "gzip" if magic.startswith(GZIP_MAGIC) else "zstd" if magic == ZSTD_MAGIC else "file"
    openers = {
        "gzip": lambda: gzip.open(path, "rb"),  # noqa: SIM115 - entered by the with below
        "zstd": lambda: pa.input_stream(str(path), compression="zstd"),
        "file": lambda: path.open("rb"),
    }
    try:
        with openers[kind]() as stream:
            rest = b""
            while chunk := stream.read(CHUNK):
                *whole, rest = (rest + chunk).split(b"\n")
                yield from (line + b"\n" for line in whole)
            if rest:
                yield rest
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        raise UserError(f"{path}: cannot read this {kind} to its end ({exc})") from None


def _check_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"unknown --encoding {encoding!r}") from None
    if 'a,"\n'.encode(name, errors="replace") != b'a,"\n':
        raise UserError(f"--encoding {encoding}: only ASCII-compatible encodings can be read")
    return name


def parse_reviews_csv(path: Path, encoding: str = "utf-8") -> RawLoad:
    """Parse a review CSV into raw rows and load rejects; raise UserError for unusable files."""
    if not path.exists():
        raise UserError(f"reviews file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a CSV file")
    encoding = _check_encoding(encoding)
    hinted = {name: 0 for name in HINT_ENCODINGS} if encoding == "utf-8" else {}
    digest = hashlib.sha256()
    columns: dict[str, list] = {name: [] for name in REVIEWS_SCHEMA.names}
    rejects: dict[str, list] = {name: [] for name in REJECTS_SCHEMA.names}
    order: list[int] | None = None
    lines = _Lookahead(_numbered(path, digest.update))
    for line_number, raw in lines:
        if order is None:
            if not raw.strip():
                raise UserError(f"{path} is empty: expected a header {','.join(EXPECTED_COLUMNS)}")
            order = _header_order(raw, path, encoding)
            continue
        last, (reason, fields, text) = _record(lines, line_number, raw, encoding)
        if reason == "undecodable" and b"\x00" not in raw:
            for name in hinted:
                hinted[name] += _decodes(raw, name)
        if reason:
            rejects["line_number"].append(line_number)
            rejects["last_line_number"].append(last)
            rejects["reason"].append(reason)
            rejects["raw_line"].append(text)
            continue
        columns["line_number"].append(line_number)
        columns["last_line_number"].append(last)
        columns["product_url"].append(fields[order[0]])
        columns["reviewer_id"].append(fields[order[1]])
        columns["stars"].append(fields[order[2]])
    if order is None:
        raise UserError(f"{path} is empty: expected a header {','.join(EXPECTED_COLUMNS)}")
    data_lines = lines.last_number - 1
    if data_lines == 0:
        raise UserError(f"{path} has a header but no review lines")
    notes = tuple(
        f"{count:,} lines that are not UTF-8 read as {name}: if the file is {name}, load it "
        f"again with --encoding {name}"
        for name, count in hinted.items()
        if count
    )
    return RawLoad(
        reviews=pa.table(columns, schema=REVIEWS_SCHEMA),
        rejects=pa.table(rejects, schema=REJECTS_SCHEMA),
        source_path=str(path.resolve()),
        sha256=digest.hexdigest(),
        data_lines=data_lines,
        notes=notes,
    )


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _classify(raw: bytes, encoding: str = "utf-8") -> tuple[str | None, list[str], str]:
    """(reject reason or None, fields, the line as text for the rejects table)."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return "undecodable", [], raw.decode("utf-8", errors="backslashreplace")
    if "\x00" in text:  # Postgres text cannot hold NUL: reject on every engine alike
        return "undecodable", [], text.replace("\x00", "\\x00")
    if not text.strip():
        return "blank_line", [], text
    fields, open_quote = _parse(text)
    if open_quote:
        return "unclosed_quote", [], text
    if fields is None or len(fields) != len(EXPECTED_COLUMNS):
        return "ragged_line", [], text
    return None, fields, text


class _Lookahead:
    """(line number, line without its line end) pairs that can be put back, for records that
    turn out not to span the lines read ahead."""

    def __init__(self, lines: Iterator[tuple[int, bytes]]) -> None:
        self._lines, self._back = lines, collections.deque()
        self.last_number = 0

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> tuple[int, bytes]:
        if self._back:
            return self._back.popleft()
        number, line = next(self._lines)
        self.last_number = number
        return number, line

    def put_back(self, taken: list[tuple[int, bytes]]) -> None:
        self._back.extendleft(reversed(taken))


def _numbered(path: Path, seen: Callable[[bytes], object]) -> Iterator[tuple[int, bytes]]:
    """The file's lines numbered from 1, without their line ends, each shown to `seen` (the
    file's digest) as read."""
    for number, line in enumerate(_lines(path), start=1):
        seen(line)
        yield number, line.rstrip(b"\r\n")


def _record(
    lines: _Lookahead, number: int, raw: bytes, encoding: str
) -> tuple[int, tuple[str | None, list[str], str]]:
    """(last line number, classification) of the record that starts at line `number`: a quoted
    field left open takes the next lines (joined by LF) until it closes, at most
    MAX_RECORD_LINES in all; still open then, the first line alone is `unclosed_quote` and the
    lines read ahead are put back."""
    found = _classify(raw, encoding)
    taken: list[tuple[int, bytes]] = []
    while found[0] == "unclosed_quote" and len(taken) < MAX_RECORD_LINES - 1:
        following = next(lines, None)
        if following is None:
            break
        taken.append(following)
        joined = _classify(b"\n".join([raw, *(line for _, line in taken)]), encoding)
        if joined[0] == "undecodable":
            break  # the undecodable line is its own reject, not part of this record
        if joined[0] != "unclosed_quote":
            return taken[-1][0], joined
    lines.put_back(taken)
    return number, found


def load_reviews(
    warehouse: Warehouse, path: Path, hmac_key: bytes | None = None, encoding: str = "utf-8"
) -> RawLoad:
    """Parse `path` and replace the raw tables with it (the same file twice gives one copy).

    With `hmac_key`, reviewer ids are replaced by keyed hashes before anything is written
    (trainer/ingest/anonymize.py). Only raw.* is written: a Postgres target's app tables come
    from `python -m trainer migrate` alone (the embedded DuckDB file sets its own up)."""
    parsed = parse_reviews_csv(path, encoding)
    if hmac_key is not None:
        parsed = anonymize_load(parsed, hmac_key)
    warehouse.replace_raw(parsed)
    return parsed
