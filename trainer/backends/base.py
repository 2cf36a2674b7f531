"""The one small interface every engine implements (DuckDB embedded, Postgres in production).

Everything above this layer (loading, training, publishing, recommending) speaks only these
methods; SQL that differs by engine stays in the backends and in dbt dispatch macros.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from trainer.errors import UserError

DEFAULT_COLUMN_DIM = 256
# The most videos one recommend/similar call returns, on every backend and in every SQL function
# (rendered into sql/postgres as {max_k}): an unbounded k would let any caller, anon included,
# read the whole catalog and its scores in one call.
MAX_K = 100
# The most video ids one call may exclude (already shown, disliked), checked here and in the Edge
# Function (supabase/functions/ai-recommend/handler.ts); the SQL functions use any array given.
MAX_EXCLUDE = 500
# The model_runs columns that hold JSON (json in DuckDB, jsonb in Postgres).
RUN_JSON_COLUMNS = frozenset({"config", "metrics", "notes"})


@dataclass(frozen=True)
class RawLoad:
    """A parsed CSV ready to replace the raw tables: rows, unparseable lines and provenance."""

    reviews: pa.Table  # line_number, last_line_number, product_url, reviewer_id, stars (text)
    rejects: pa.Table  # line_number, last_line_number, reason, raw_line
    source_path: str
    sha256: str
    data_lines: int
    notes: tuple[str, ...] = ()  # for the operator, e.g. which --encoding the rejects suggest


@dataclass(frozen=True)
class ServingTables:
    """What serving needs besides the vectors, read from the marts of the database that trained.

    Publishing to another database (the snapshot flow: train on a restored copy, publish to
    production) carries these along, since production holds no marts. Publishing where the marts
    are, the backend takes them from its own marts (interactions, video_popularity) instead.
    """

    videos: pa.Table  # id (uuid text), product_url: the videos the data refers to, to register
    reviewed: pa.Table  # user_id, video_id: every reviewed pair (recommend never suggests them)
    positives: pa.Table  # video_id, positives: positive reviews per video (the popular ranking)


@dataclass(frozen=True)
class Recommendation:
    video_id: str
    product_url: str
    score: float


class Warehouse(ABC):
    """A connection to one target with the operations the pipeline needs."""

    kind: str

    def __init__(self, schema: str) -> None:
        self.schema = schema

    # -- schema -------------------------------------------------------------------------------
    @abstractmethod
    def ensure_app_schema(self, column_dim: int = DEFAULT_COLUMN_DIM) -> None:
        """Create raw tables and the app's tables if absent (idempotent)."""

    @abstractmethod
    def embedding_column_dim(self, table: str) -> int:
        """The dimension of `table`.embedding as declared in the database."""

    # -- data in and out ----------------------------------------------------------------------
    @abstractmethod
    def replace_raw(self, load: RawLoad) -> None:
        """Replace raw.reviews, raw.load_rejects and raw.loads in one transaction."""

    @abstractmethod
    def read(self, sql: str) -> pl.DataFrame:
        """Run a query as written and return its result as a polars frame (bulk, never row by
        row). The text goes to the engine unchanged: no placeholders, so no values. Whatever
        takes a value (a version, a table name) is a method of its own below, written in its
        engine's own parameter style."""

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run statements as written, for their side effect (as `read`: no values)."""

    @abstractmethod
    def publish_embeddings(
        self,
        videos: tuple[list[str], np.ndarray],
        users: tuple[list[str], np.ndarray],
        model_version: str,
        serving: ServingTables | None = None,
    ) -> None:
        """Replace both embedding tables with one model version's vectors, atomically.

        Vectors narrower than the column are zero-padded (cosine is unchanged); wider is an error.
        `serving` (from another database's marts) also registers its videos here and refreshes
        what serving reads beside the vectors, in the same transaction.
        """

    @abstractmethod
    def record_run(self, run: dict[str, Any]) -> None:
        """Upsert the model_runs row of run["model_version"] (dict and list values as JSON)."""

    @abstractmethod
    def run_row(self, model_version: str) -> dict[str, Any] | None:
        """The model_runs row of a version (its JSON columns as Python objects); None when
        there is no such row or no model_runs table."""

    @abstractmethod
    def mark_published(self, model_version: str) -> None:
        """Set model_runs.published for a version whose embeddings are live again (rollback)."""

    @abstractmethod
    def table_exists(self, name: str) -> bool:
        """Whether a table (`name` or `schema.name`; the target's schema by default) exists."""

    # -- serving ------------------------------------------------------------------------------
    # Each takes `exclude`: video ids never to return (already shown, disliked), at most
    # MAX_EXCLUDE uuids (check_exclude); the answer is the model's order without them, still k.
    @abstractmethod
    def recommend(self, user_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        """Top-k videos for a user, excluding what they reviewed; popular ones without a vector."""

    @abstractmethod
    def similar(self, video_id: str, k: int, exclude: Iterable[str] = ()) -> list[Recommendation]:
        """The k videos closest to one video."""

    @abstractmethod
    def recommend_for_likes(
        self, video_ids: list[str], k: int, exclude: Iterable[str] = ()
    ) -> list[Recommendation]:
        """Top-k videos for someone known only by the videos they liked (the user tower on
        those likes, trainer/ml/model.py: fold_in), the likes excluded; [] when none of them
        has a published vector."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_vectors(ids: list[str], matrix: np.ndarray, table: str) -> np.ndarray:
    """What every engine refuses to publish, before anything is written: not one row per id,
    duplicate ids, NaN or infinite values. Returns the matrix as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise UserError(
            f"{table}: {len(ids)} ids but a matrix of shape {matrix.shape}; expected one row "
            "per id; nothing published"
        )
    if not np.isfinite(matrix).all():
        raise UserError(f"{table}: the model produced NaN or infinite values; nothing published")
    if len(set(ids)) != len(ids):
        raise UserError(f"{table}: duplicate ids in the model's vectors; nothing published")
    return matrix


def check_widths(videos: np.ndarray, users: np.ndarray) -> None:
    """User and video vectors of one model share one space: the same width."""
    if videos.shape[1:] != users.shape[1:]:
        raise UserError(
            f"video vectors are {videos.shape[1:]} wide but user vectors {users.shape[1:]}: "
            "not one model's embedding space; nothing published"
        )


def pad_to(matrix: np.ndarray, column_dim: int, table: str) -> np.ndarray:
    """Zero-pad vectors to the column's dimension; a wider model is a clear error."""
    dim = matrix.shape[1]
    if dim > column_dim:
        raise UserError(
            f"model embedding dimension {dim} is larger than {table}.embedding's "
            f"dimension {column_dim}; use --embedding-dim <= {column_dim} or migrate the column"
        )
    if dim == column_dim:
        return np.ascontiguousarray(matrix, dtype=np.float32)
    padded = np.zeros((matrix.shape[0], column_dim), dtype=np.float32)
    padded[:, :dim] = matrix
    return padded


def check_k(k: int) -> int:
    """How many videos a caller may ask for: 1 to MAX_K."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UserError(f"k must be between 1 and {MAX_K}, got {k!r}")
    return k


def check_exclude(exclude: Iterable[str]) -> list[str]:
    """The videos a caller excludes: at most MAX_EXCLUDE uuids, as canonical text (duplicates
    dropped, the first order kept)."""
    if isinstance(exclude, str):
        raise UserError("exclude must be a list of video uuids, not one string")
    ids = list(dict.fromkeys(check_video_ids(list(exclude))))
    if len(ids) > MAX_EXCLUDE:
        raise UserError(f"exclude takes at most {MAX_EXCLUDE} video ids, got {len(ids)}")
    return ids


def check_video_ids(video_ids: list[str]) -> list[str]:
    """Video ids as canonical uuid text; anything else is a clear error."""
    out = []
    for video_id in video_ids:
        try:
            out.append(str(uuid.UUID(str(video_id))))
        except ValueError as exc:
            raise UserError(f"video id must be a uuid, got {video_id!r}") from exc
    return out
