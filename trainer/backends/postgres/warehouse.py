"""PostgresWarehouse: the Warehouse interface on Postgres + pgvector, one connection it owns.

A thin class: it opens the connection and its transactions, and hands each operation to the
module that does that job (migrations, copy_io, publish, ann, serving).

Every query runs in a short transaction that sets search_path (marts, then public) locally, so
unqualified names behave like DuckDB's and the code is correct behind a transaction pooler
(Supabase's port 6543), where session settings do not survive between transactions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl
import psycopg

from trainer.backends.base import (
    DEFAULT_COLUMN_DIM,
    RawLoad,
    Recommendation,
    ServingTables,
    Warehouse,
)
from trainer.backends.postgres import ann, copy_io, migrations, publish
from trainer.backends.postgres import serving as serving_queries
from trainer.backends.postgres.connection import (
    ConnectionSettings,
    connect,
    connect_error,
    connection_settings,
    quote_ident,
)
from trainer.backends.postgres.layout import APP_SCHEMA, RAW_SCHEMA
from trainer.backends.profiles import Target
from trainer.errors import UserError


class PostgresWarehouse(Warehouse):
    kind = "postgres"

    def __init__(
        self,
        settings: ConnectionSettings,
        schema: str = "recsys",
        *,
        index_method: str = "ivfflat",
        connect_timeout: int = 10,
    ) -> None:
        super().__init__(schema)
        if index_method not in ("ivfflat", "hnsw"):
            raise UserError(f"VECTOR_INDEX_METHOD must be ivfflat or hnsw, got {index_method!r}")
        self.settings = settings
        self.index_method = index_method
        # Called with each step's name during publish_embeddings, inside its transaction
        # ("staged", "upserted:video_embeddings", "upserted:user_embeddings", "upserted",
        # "indexed", "swapped"): progress reporting, benchmarks, fault injection in tests.
        self.publish_observer: Callable[[str], None] | None = None
        self._connect_timeout = connect_timeout
        try:
            self.con = self._connect()
        except psycopg.Error as exc:
            raise connect_error(exc, settings) from None
        self._search_path = f"{quote_ident(schema)}, {APP_SCHEMA}"
        self._vector_schema: str | None = None
        self._register_vector()

    def _connect(self) -> psycopg.Connection:
        """A new autocommit connection (the warehouse's own, or a publish worker's)."""
        return connect(self.settings, self._connect_timeout)

    @classmethod
    def from_target(cls, target: Target) -> PostgresWarehouse:
        return cls(
            connection_settings(target),
            target.schema,
            index_method=os.environ.get("VECTOR_INDEX_METHOD", "ivfflat").strip().lower(),
        )

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        """One transaction with this warehouse's session settings made local to it."""
        with self.con.transaction(), self.con.cursor() as cur:
            cur.execute(
                "select set_config('search_path', %s, true), set_config('timezone', 'UTC', true),"
                " set_config('datestyle', 'ISO, YMD', true),"
                " set_config('extra_float_digits', '1', true)",
                (self._search_path,),
            )
            yield cur

    def _register_vector(self) -> None:
        """Let psycopg send and receive numpy arrays as pgvector values (when installed)."""
        from pgvector.psycopg.vector import register_vector_info
        from psycopg.types import TypeInfo

        row = self.con.execute(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'vector'"
        ).fetchone()
        if row is None:
            return
        self._vector_schema = row[0]
        register_vector_info(self.con, TypeInfo.fetch(self.con, f"{row[0]}.vector"))

    def _index(self) -> ann.IndexSettings:
        """The ANN index settings as they are now (index_method may be changed after init)."""
        return ann.IndexSettings(self.index_method, self.schema, self._vector_schema)

    def _notify(self, step: str) -> None:
        if self.publish_observer is not None:
            self.publish_observer(step)

    # -- schema -------------------------------------------------------------------------------
    def ensure_app_schema(self, column_dim: int = DEFAULT_COLUMN_DIM) -> None:
        """Apply sql/postgres/*.sql in order, in one transaction (idempotent)."""
        if not 1 <= int(column_dim) <= ann.MAX_INDEXED_DIM:
            raise UserError(
                f"embedding column dimension must be between 1 and {ann.MAX_INDEXED_DIM} "
                f"(pgvector's index limit), got {column_dim}"
            )
        rendered = migrations.render_migrations(column_dim, self.schema)
        with self._tx() as cur:
            vector_schema = migrations.lock_and_create_extension(
                cur, rendered[0], self.settings.described
            )
            # keep the dimensions the published model's index uses (when they still fit)
            ann_dim = ann.function_ann_dim(cur)
            if ann_dim is None or ann_dim > int(column_dim):
                ann_dim = int(column_dim)
            rendered = migrations.render_migrations(column_dim, self.schema, vector_schema, ann_dim)
            migrations.apply_migrations(cur, rendered[1:])
            self._vector_schema = vector_schema
            if ann.index_on(cur, ann_dim, vector_schema) is False:
                # an index the functions cannot use (e.g. on the whole column, from before
                # the index was on the model's dimensions): rebuild it to match
                ann.rebuild_ann_index(cur, ann_dim, self._index())
            ann.tune_functions(cur)
        self._register_vector()

    def embedding_column_dim(self, table: str) -> int:
        with self._tx() as cur:
            return migrations.column_dim(cur, table)

    # -- data in and out ----------------------------------------------------------------------
    def replace_raw(self, load: RawLoad) -> None:
        """COPY the parsed CSV into raw.* (truncate + copy: dbt's views on them stay valid)."""
        with self._tx() as cur:
            copy_io.replace_raw(cur, load)
        raw = quote_ident(RAW_SCHEMA)
        self.con.execute(f"analyze {raw}.reviews, {raw}.load_rejects")

    def read(self, sql: str) -> pl.DataFrame:
        """The query's result through COPY ... TO STDOUT (CSV), parsed by polars in one go."""
        with self._tx() as cur:
            data, columns = copy_io.copy_out(cur, sql)
        return copy_io.frame(data, columns, self.con.adapters)

    def execute(self, sql: str) -> None:
        with self._tx() as cur:
            cur.execute(sql)  # no parameters: psycopg sends the text as written

    # -- publishing ---------------------------------------------------------------------------
    def publish_embeddings(
        self,
        videos: tuple[list[str], np.ndarray],
        users: tuple[list[str], np.ndarray],
        model_version: str,
        serving: ServingTables | None = None,
    ) -> None:
        """Replace both embedding tables with one model version, atomically, and index it.

        How, and the steps reported to `publish_observer`: publish.publish_embeddings."""
        if not model_version:
            raise UserError("model_version must not be empty")
        if self._vector_schema is None:
            self._register_vector()
            if self._vector_schema is None:
                raise UserError(
                    "pgvector is not installed in this database: run "
                    "`python -m trainer migrate --target postgres` first"
                )
        publish.publish_embeddings(
            self._tx,
            self._connect,
            self._notify,
            self._index(),
            videos,
            users,
            model_version,
            serving,
        )

    def ann_index(self, cur: psycopg.Cursor | None = None) -> str:
        """The name of the published slot's ANN index (whether or not it exists)."""
        if cur is None:
            with self._tx() as own:
                return ann.ann_index(own)
        return ann.ann_index(cur)

    def ann_index_lists(self, cur: psycopg.Cursor | None = None) -> int | None:
        """The lists of the current ivfflat index (None when there is none, or it is hnsw)."""
        if cur is None:
            with self._tx() as own:
                return ann.ann_index_lists(own)
        return ann.ann_index_lists(cur)

    def record_run(self, run: dict[str, Any]) -> None:
        """Insert or update one model_runs row (dict/list values are stored as jsonb)."""
        serving_queries.record_run(self._tx, run)

    def run_row(self, model_version: str) -> dict[str, Any] | None:
        return serving_queries.run_row(self._tx, model_version)

    def mark_published(self, model_version: str) -> None:
        serving_queries.mark_published(self._tx, model_version)

    def table_exists(self, name: str) -> bool:
        """Whether `name` resolves as this warehouse's queries resolve it (the marts schema,
        then public), as a table or a view."""
        schema, _, table = name.rpartition(".")
        with self._tx() as cur:
            cur.execute(
                "select count(*) from information_schema.tables where table_name = %s "
                "and table_schema = any(coalesce(%s, current_schemas(false)))",
                (table, [schema] if schema else None),
            )
            return cur.fetchone()[0] > 0

    # -- serving ------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        return serving_queries.recommend(self._tx, user_id, k, exclude)

    def similar(self, video_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        return serving_queries.similar(self._tx, video_id, k, exclude)

    def recommend_for_likes(
        self, video_ids: list[str], k: int, exclude: Iterable[str] = ()
    ) -> list[Recommendation]:
        return serving_queries.recommend_for_likes(self._tx, video_ids, k, exclude)

    def close(self) -> None:
        self.con.close()
