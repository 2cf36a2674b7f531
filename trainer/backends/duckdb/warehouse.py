"""The embedded DuckDB file as a Warehouse: raw load, reads, the publish, run records.

Embeddings are FLOAT[D] arrays (no index: serving.py scans exactly). The file is also the app's
database, so a publish brings its tables and macros up to date itself (_ensure_file_schema).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from trainer.backends.base import (
    DEFAULT_COLUMN_DIM,
    RUN_JSON_COLUMNS,
    RawLoad,
    Recommendation,
    ServingTables,
    Warehouse,
    check_vectors,
    check_widths,
    pad_to,
)
from trainer.backends.duckdb import serving
from trainer.errors import UserError

SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "duckdb"


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"

    def __init__(self, path: Path, schema: str = "main", read_only: bool = False) -> None:
        super().__init__(schema)
        self.path = path
        if read_only and not path.exists():
            raise UserError(f"no warehouse at {path}: run `python -m trainer load CSV` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            from trainer.backends.run_lock import duckdb_holder

            raise UserError(
                f"{path} is open for writing in another process (the run lock names "
                f"{duckdb_holder(path)}): wait for it to finish, then run again"
            ) from None

    # -- schema -------------------------------------------------------------------------------
    def ensure_app_schema(self, column_dim: int = DEFAULT_COLUMN_DIM) -> None:
        ddl = (SQL_DIR / "app_schema.sql").read_text().replace("{dim}", str(int(column_dim)))
        self._run(ddl)

    def _ensure_file_schema(self) -> None:
        """The embedded file is the app's database too, and nothing else migrates it: its
        tables and macros (sql/duckdb/app_schema.sql, idempotent) are brought up to date at
        the dimension its embedding column already has, else at the default."""
        existing = self.table_exists("video_embeddings")
        dim = self.embedding_column_dim("video_embeddings") if existing else DEFAULT_COLUMN_DIM
        self.ensure_app_schema(dim)

    def embedding_column_dim(self, table: str) -> int:
        row = self.con.execute(
            "select data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? and column_name = 'embedding'",
            [self.schema, table],
        ).fetchall()
        if not row:
            raise UserError(f"{table}.embedding does not exist; run the load step first")
        # e.g. FLOAT[256]
        return int(row[0][0].rsplit("[", 1)[1].rstrip("]"))

    # -- data in and out ----------------------------------------------------------------------
    def replace_raw(self, load: RawLoad) -> None:
        """raw.* replaced in one transaction; a new file gets its app tables first (dbt reads
        `videos` as a source)."""
        self._ensure_file_schema()
        con = self.con
        self._run("begin transaction")
        try:
            self._run("create schema if not exists raw")
            con.register("reviews_in", load.reviews)
            con.register("rejects_in", load.rejects)
            self._run("create or replace table raw.reviews as select * from reviews_in")
            self._run("create or replace table raw.load_rejects as select * from rejects_in")
            self._run(
                "create or replace table raw.loads as select ? as source_path, ? as sha256, "
                "cast(? as bigint) as data_lines, cast(? as bigint) as parsed_rows, "
                "cast(? as bigint) as rejected_lines, current_timestamp as loaded_at",
                [
                    load.source_path,
                    load.sha256,
                    load.data_lines,
                    load.reviews.num_rows,
                    load.rejects.num_rows,
                ],
            )
            self._run("commit")
        except BaseException:
            self._run("rollback")
            raise
        finally:
            con.unregister("reviews_in")
            con.unregister("rejects_in")

    def read(self, sql: str) -> pl.DataFrame:
        return pl.from_arrow(self.con.sql(sql).to_arrow_table())

    def execute(self, sql: str) -> None:
        self.con.execute(sql).fetchall()

    def _run(self, sql: str, params: list[Any] | None = None) -> None:
        """One statement with DuckDB's `?` placeholders (values never go into the text)."""
        self.con.execute(sql, params).fetchall()

    def publish_embeddings(
        self,
        videos: tuple[list[str], np.ndarray],
        users: tuple[list[str], np.ndarray],
        model_version: str,
        serving: ServingTables | None = None,
    ) -> None:
        if serving is not None:
            raise UserError(
                "a DuckDB warehouse is published to only where it was trained (its marts are "
                "what recommend reads); publish to another Postgres target instead"
            )
        # The checks Postgres makes too (trainer/backends/base.py), before anything is written.
        video_ids, user_ids = [str(i) for i in videos[0]], [str(i) for i in users[0]]
        video_matrix = check_vectors(video_ids, videos[1], "video_embeddings")
        user_matrix = check_vectors(user_ids, users[1], "user_embeddings")
        check_widths(video_matrix, user_matrix)
        # (table, key column, key expression, ids, vectors): one statement shape for both.
        tables = [
            ("video_embeddings", "video_id", "cast(video_id as uuid)", video_ids, video_matrix),
            ("user_embeddings", "user_id", "user_id", user_ids, user_matrix),
        ]
        self._ensure_file_schema()  # a file made by an older trainer gains the tables added since
        con = self.con
        self._run("begin transaction")
        try:
            self._register_catalog()
            for table, key, key_sql, ids, matrix in tables:
                dim = self.embedding_column_dim(table)
                con.register("vectors_in", _vectors_table(key, ids, pad_to(matrix, dim, table)))
                self._run(f"delete from {table}")
                self._run(
                    f"insert into {table} ({key}, embedding, model_version, updated_at) "
                    f"select {key_sql}, cast(embedding as float[{dim}]), ?, current_timestamp "
                    "from vectors_in",
                    [model_version],
                )
                con.unregister("vectors_in")
            self._refresh_serving(model_version)
            self._run("commit")
        except BaseException:
            self._run("rollback")
            raise

    def _register_catalog(self) -> None:
        """The videos the marts mark register_at_publish (video_catalog) become videos rows,
        inside the publish transaction, so after the gate; nothing without the mart."""
        if self.table_exists("video_catalog"):
            self._run(
                "insert into videos (id, product_url, created_at) "
                "select video_id, product_url, current_timestamp from video_catalog as c "
                "where register_at_publish "
                "and not exists (select 1 from videos as v where v.id = c.video_id) "
                "and not exists (select 1 from videos as v where v.product_url = c.product_url) "
                "order by video_id on conflict do nothing"
            )

    def _refresh_serving(self, model_version: str) -> None:
        """popular_videos and reviewed_videos from the marts, inside the publish transaction;
        left as they are without marts (a warehouse that only receives vectors)."""
        if not (self.table_exists("interactions") and self.table_exists("video_popularity")):
            return
        self._run("delete from reviewed_videos")
        self._run(
            "insert into reviewed_videos select user_id, list(distinct video_id order by video_id) "
            "from interactions where video_id is not null group by user_id"
        )
        self._run("delete from popular_videos")
        self._run(
            "insert into popular_videos select p.video_id, p.positives, ? from video_popularity "
            "as p join video_embeddings as e on e.video_id = p.video_id",
            [model_version],
        )

    def record_run(self, run: dict[str, Any]) -> None:
        """Insert or update one model_runs row (JSON columns given as Python objects)."""
        columns = list(run)
        values = [json.dumps(v) if isinstance(v, dict | list) else v for v in run.values()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "model_version")
        self.con.execute(
            f"insert into model_runs ({', '.join(columns)}) "
            f"values ({', '.join('?' for _ in columns)}) "
            f"on conflict (model_version) do update set {updates}",
            values,
        )

    def run_row(self, model_version: str) -> dict[str, Any] | None:
        if not self.table_exists("model_runs"):
            return None
        cursor = self.con.execute(
            "select * from model_runs where model_version = ?", [model_version]
        )
        found = cursor.fetchall()
        if not found:
            return None
        row = dict(zip([d[0] for d in cursor.description], found[0], strict=True))
        return {
            k: json.loads(v) if k in RUN_JSON_COLUMNS and isinstance(v, str) else v
            for k, v in row.items()
        }

    def mark_published(self, model_version: str) -> None:
        self._run("update model_runs set published = true where model_version = ?", [model_version])

    def table_exists(self, name: str) -> bool:
        schema, _, table = name.rpartition(".")
        ((count,),) = self.con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema or self.schema, table],
        ).fetchall()
        return count > 0

    # -- serving (queries in serving.py) -------------------------------------------------------
    def recommend(self, user_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        return serving.recommend(self.con, user_id, k, exclude)

    def similar(self, video_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        dim = self.embedding_column_dim("video_embeddings")
        return serving.similar(self.con, video_id, k, dim, exclude)

    def recommend_for_likes(
        self, video_ids: list[str], k: int, exclude: Iterable[str] = ()
    ) -> list[Recommendation]:
        return serving.recommend_for_likes(self.con, video_ids, k, exclude)

    def close(self) -> None:
        self.con.close()


def _vectors_table(key: str, ids: list[str], padded: np.ndarray) -> pa.Table:
    flat = pa.array(padded.reshape(-1), type=pa.float32())
    vectors = pa.FixedSizeListArray.from_arrays(flat, padded.shape[1])
    return pa.table({key: pa.array(ids, type=pa.string()), "embedding": vectors})
