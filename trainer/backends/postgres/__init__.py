"""Production backend: Postgres + pgvector (Supabase), the same interface as the embedded DuckDB.

Data moves in bulk both ways: COPY (CSV) for the raw load and for reads into polars, binary COPY
for the embedding write-back. A publish is one transaction under an advisory lock; a reader
sees the old set or the new one, never a mix, and a publish that dies midway changes nothing a
reader sees.

One job per module:
  layout      where things live: schemas, tables, views, functions (sql/postgres/)
  connection  connection settings from a target, secrets scrubbed, identifiers quoted
  migrations  sql/postgres/*.sql rendered and applied under the migrate lock
  copy_io     tabular data in and out by COPY (arrow in, polars out), `?` placeholders
  wire        the binary COPY encoder of the embedding write-back (pure functions)
  slots       the two slots behind each embedding view: fill the hidden one, swap it in
  republish   the same version again: staged and upserted into the published slots
  videos      the videos the vectors refer to: registered, missing ones named
  ann         the ANN index: rules, build, and the serving functions' search settings
  serving     reviewed_videos, popular_videos, model_runs, recommend, similar
  publish     one publish: the locked transaction that ties the above together
  warehouse   PostgresWarehouse: owns the connection, delegates to the modules above
"""

from __future__ import annotations

from trainer.backends.postgres.ann import (
    MAX_INDEXED_DIM,
    ann_expression,
    hnsw_ef_search,
    ivfflat_lists,
    ivfflat_probes,
    vector_index_memory_mb,
)
from trainer.backends.postgres.connection import (
    POOLER_PORT,
    ConnectionSettings,
    connection_settings,
)
from trainer.backends.postgres.layout import (
    ANN_INDEX_SUFFIX,
    ANN_TABLE,
    APP_SCHEMA,
    EMBEDDING_TABLES,
    RAW_SCHEMA,
    SERVING_FUNCTIONS,
    SQL_DIR,
)
from trainer.backends.postgres.migrations import MIGRATE_LOCK_KEY, render_migrations
from trainer.backends.postgres.publish import PUBLISH_LOCK_KEY
from trainer.backends.postgres.slots import active_slot, other_slot
from trainer.backends.postgres.warehouse import PostgresWarehouse
from trainer.backends.postgres.wire import binary_copy_blocks, uuid_bytes

# The lock timeouts of a publish (SLOT_LOCK_TIMEOUT, SWAP_LOCK_TIMEOUT, SWAP_ATTEMPTS) are read
# from trainer.backends.postgres.slots at each call: change them there, not here.
__all__ = [
    "ANN_INDEX_SUFFIX",
    "ANN_TABLE",
    "APP_SCHEMA",
    "ConnectionSettings",
    "EMBEDDING_TABLES",
    "MAX_INDEXED_DIM",
    "MIGRATE_LOCK_KEY",
    "POOLER_PORT",
    "PUBLISH_LOCK_KEY",
    "PostgresWarehouse",
    "RAW_SCHEMA",
    "SERVING_FUNCTIONS",
    "SQL_DIR",
    "active_slot",
    "ann_expression",
    "binary_copy_blocks",
    "connection_settings",
    "hnsw_ef_search",
    "ivfflat_lists",
    "ivfflat_probes",
    "other_slot",
    "render_migrations",
    "uuid_bytes",
    "vector_index_memory_mb",
]
