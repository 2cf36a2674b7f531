"""CSV -> raw tables. Every line ends up somewhere: a raw row, or a load reject with its reason.

The parser is ours rather than the engine's CSV reader so that DuckDB and Postgres see exactly the
same rows and rejects. Fields stay text here; typing and validation are dbt's job (staging), where
analysts can see and test them.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from trainer.backends import RawLoad, Warehouse
from trainer.errors import UserError
from trainer.ingest.anonymize import anonymize_load

EXPECTED_COLUMNS = ("product_url", "reviewer_id", "stars")
BOM = b"\xef\xbb\xbf"

REVIEWS_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("product_url", pa.string()),
        ("reviewer_id", pa.string()),
        ("stars", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [("line_number", pa.int64()), ("reason", pa.string()), ("raw_line", pa.string())]
)


def _split(text: str) -> list[str] | None:
    """Fields of one CSV line, or None when quoting is broken."""
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration):
        return None


def _header_order(line: bytes, path: Path) -> list[int]:
    """Positions of product_url, reviewer_id, stars in the header (any order, nothing else)."""
    try:
        text = line.removeprefix(BOM).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the header line is not UTF-8 text") from exc
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
    with path.open("rb") as handle:
        yield from handle


def parse_reviews_csv(path: Path) -> RawLoad:
    """Parse a review CSV into raw rows and load rejects; raise UserError for unusable files."""
    if not path.exists():
        raise UserError(f"reviews file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a CSV file")
    digest = hashlib.sha256()
    columns: dict[str, list] = {name: [] for name in REVIEWS_SCHEMA.names}
    rejects: dict[str, list] = {name: [] for name in REJECTS_SCHEMA.names}
    order: list[int] | None = None
    line_number = 0
    for line_number, line in enumerate(_lines(path), start=1):
        digest.update(line)
        raw = line.rstrip(b"\r\n")
        if order is None:
            if not raw.strip():
                raise UserError(f"{path} is empty: expected a header {','.join(EXPECTED_COLUMNS)}")
            order = _header_order(raw, path)
            continue
        reason, fields, text = _classify(raw)
        if reason:
            rejects["line_number"].append(line_number)
            rejects["reason"].append(reason)
            rejects["raw_line"].append(text)
            continue
        columns["line_number"].append(line_number)
        columns["product_url"].append(fields[order[0]])
        columns["reviewer_id"].append(fields[order[1]])
        columns["stars"].append(fields[order[2]])
    if order is None:
        raise UserError(f"{path} is empty: expected a header {','.join(EXPECTED_COLUMNS)}")
    data_lines = line_number - 1
    if data_lines == 0:
        raise UserError(f"{path} has a header but no review lines")
    return RawLoad(
        reviews=pa.table(columns, schema=REVIEWS_SCHEMA),
        rejects=pa.table(rejects, schema=REJECTS_SCHEMA),
        source_path=str(path.resolve()),
        sha256=digest.hexdigest(),
        data_lines=data_lines,
    )


def _classify(raw: bytes) -> tuple[str | None, list[str], str]:
    """(reject reason or None, fields, the line as text for the rejects table)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable", [], raw.decode("utf-8", errors="backslashreplace")
    if "\x00" in text:  # Postgres text cannot hold NUL: reject on every engine alike
        return "undecodable", [], text.replace("\x00", "\\x00")
    if not text.strip():
        return "blank_line", [], text
    fields = _split(text)
    if fields is None or len(fields) != len(EXPECTED_COLUMNS):
        return "ragged_line", [], text
    return None, fields, text


def load_reviews(warehouse: Warehouse, path: Path, hmac_key: bytes | None = None) -> RawLoad:
    """Parse `path` and replace the raw tables with it (the same file twice gives one copy).

    With `hmac_key`, reviewer ids are replaced by keyed hashes before anything is written
    (trainer/ingest/anonymize.py)."""
    parsed = parse_reviews_csv(path)
    if hmac_key is not None:
        parsed = anonymize_load(parsed, hmac_key)
    warehouse.ensure_app_schema()
    warehouse.replace_raw(parsed)
    return parsed
