"""Tabular data in and out by COPY (CSV): arrow tables in, query results out into polars.

Data moves in bulk both ways, never row by row: the raw load and staged tables are written by
arrow's CSV writer, and a query's result is read by COPY ... TO STDOUT and parsed by polars in
one go. Queries arrive with DuckDB-style `?` placeholders, rewritten here for psycopg.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg.adapt import AdaptersMap

from trainer.backends.base import RawLoad
from trainer.backends.postgres.connection import quote_ident
from trainer.backends.postgres.layout import RAW_SCHEMA

# Postgres type name -> the dtype polars parses the CSV field as.
_CSV_DTYPES: dict[str, Any] = {
    "int2": pl.Int16,
    "int4": pl.Int32,
    "int8": pl.Int64,
    "oid": pl.Int64,
}
# Types parsed as text and converted afterwards (vectorized).
_CONVERSIONS = {"bool", "numeric", "date", "timestamp", "timestamptz", "vector", "float4", "float8"}
_READ_DTYPES: dict[str, Any] = {
    **_CSV_DTYPES,
    "float4": pl.Float32,
    "float8": pl.Float64,
    "bool": pl.Boolean,
    "numeric": pl.Float64,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "timestamptz": pl.Datetime("us", "UTC"),
    "vector": pl.List(pl.Float32),
}


def copy_arrow(cur: psycopg.Cursor, table: str, data: pa.Table, batch_rows: int = 200_000) -> None:
    """COPY an arrow table as CSV written by arrow's C++ writer (every non-null value quoted, so
    '' stays an empty string and only nulls are empty fields)."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    columns = ", ".join(quote_ident(name) for name in data.column_names)
    with cur.copy(f"copy {table} ({columns}) from stdin (format csv)") as copy:
        for batch in data.to_batches(max_chunksize=batch_rows):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
            copy.write(sink.getvalue().to_pybytes())


def replace_raw(cur: psycopg.Cursor, load: RawLoad) -> None:
    """COPY the parsed CSV into raw.* (truncate + copy: dbt's views on them stay valid)."""
    raw = quote_ident(RAW_SCHEMA)
    cur.execute(
        f"create schema if not exists {raw};"
        f"create table if not exists {raw}.reviews (line_number bigint, last_line_number bigint,"
        " product_url text, reviewer_id text, stars text);"
        f"create table if not exists {raw}.load_rejects (line_number bigint,"
        " last_line_number bigint, reason text, raw_line text);"
        # raw tables of a version before multi-line records
        f"alter table {raw}.reviews add column if not exists last_line_number bigint;"
        f"alter table {raw}.load_rejects add column if not exists last_line_number bigint;"
        f"create table if not exists {raw}.loads (source_path text, sha256 text,"
        " data_lines bigint, parsed_rows bigint, rejected_lines bigint,"
        " loaded_at timestamptz);"
        f"truncate {raw}.reviews, {raw}.load_rejects, {raw}.loads"
    )
    copy_arrow(cur, f"{raw}.reviews", load.reviews)
    copy_arrow(cur, f"{raw}.load_rejects", load.rejects)
    cur.execute(
        f"insert into {raw}.loads values (%s, %s, %s, %s, %s, now())",
        (
            load.source_path,
            load.sha256,
            load.data_lines,
            load.reviews.num_rows,
            load.rejects.num_rows,
        ),
    )


def copy_out(cur: psycopg.Cursor, sql: str) -> tuple[bytes, list[tuple[str, int]]]:
    """The query's result through COPY ... TO STDOUT (CSV), with its columns' names and type
    oids; parse it with `frame` once the transaction is over. The query carries no
    parameters, so psycopg sends its text as written (a `%` in it is just a `%`)."""
    query = sql.strip().rstrip(";")
    cur.execute(f"select * from ({query}) as _q limit 0")
    columns = [(d.name, d.type_code) for d in cur.description]
    buffer = io.BytesIO()
    with cur.copy(f"copy ({query}) to stdout (format csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    return buffer.getvalue(), columns


def frame(data: bytes, columns: list[tuple[str, int]], adapters: AdaptersMap) -> pl.DataFrame:
    """COPY's CSV as a polars frame, each column typed from its Postgres type."""
    names = _unique_names([name for name, _ in columns])
    types = [_type_name(adapters, oid) for _, oid in columns]
    if not data:
        return pl.DataFrame(
            schema={n: _READ_DTYPES.get(t, pl.String) for n, t in zip(names, types, strict=True)}
        )
    result = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        new_columns=names,
        schema_overrides={
            n: _CSV_DTYPES.get(t, pl.String) for n, t in zip(names, types, strict=True)
        },
        infer_schema=False,
    )
    conversions = [
        _convert(pl.col(n), t) for n, t in zip(names, types, strict=True) if t in _CONVERSIONS
    ]
    return result.with_columns(conversions) if conversions else result


def _type_name(adapters: AdaptersMap, oid: int) -> str:
    info = adapters.types.get(oid)
    return info.name if info is not None else "unknown"


def _convert(col: pl.Expr, type_name: str) -> pl.Expr:
    if type_name == "bool":
        return col.replace_strict({"t": True, "f": False}, default=None, return_dtype=pl.Boolean)
    if type_name == "numeric":
        return col.cast(pl.Float64)
    if type_name == "date":
        return col.str.to_date("%Y-%m-%d")
    if type_name == "timestamp":
        return col.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
    if type_name == "timestamptz":  # read with timezone UTC: "... +00"
        return (
            col.str.replace(r"\+00$", "")
            .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
            .dt.replace_time_zone("UTC")
        )
    if type_name == "vector":
        return col.str.strip_chars("[]").str.split(",").cast(pl.List(pl.Float32))
    # float4/float8: Postgres spells the specials NaN, Infinity, -Infinity
    return col.str.replace("Infinity", "inf", literal=True).cast(
        pl.Float32 if type_name == "float4" else pl.Float64
    )


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result
