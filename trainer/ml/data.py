"""The dbt marts -> compact integer-indexed arrays for training and evaluation.

Reads whole tables through polars (no row loops). Users are those with at least one train
positive, videos those that are a train positive of someone (the catalog the model can learn);
valid positives of other videos still count in the recall denominator, honestly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from trainer.backends import Warehouse
from trainer.errors import UserError


@dataclass(frozen=True)
class Csr:
    """Per-user item lists: items of user u are indices[indptr[u]:indptr[u + 1]]."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int) -> Csr:
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, items[order].astype(np.int64))

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def rows_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in `users`, position in `indices`) of every entry of `users`, in their order."""
        starts, lengths = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.cumsum(lengths) - lengths
        return rows, np.arange(int(lengths.sum())) - offsets[rows] + starts[rows]


@dataclass(frozen=True)
class Dataset:
    user_ids: list[str]
    video_ids: list[str]
    train_users: np.ndarray  # one row per train positive
    train_items: np.ndarray
    train_weights: np.ndarray  # stars / 5
    train_tune: np.ndarray  # per train row: True when it is in the tune slice
    train: Csr
    valid: Csr  # valid items in the catalog
    valid_total: np.ndarray  # per user: all valid positives, in the catalog or not
    negatives: tuple[np.ndarray, np.ndarray] | None  # (user, item) pairs from negative_samples
    fingerprint: str

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.video_ids)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.train_items, minlength=self.n_items)

    def selection_view(self) -> Dataset:
        """What model selection sees: train without the tune slice to fit on, and the tune slice
        in the place of valid. The valid split is not in it, so early stopping and sweeps that
        score on `.valid` of this view can never choose by the split that reports and gates."""
        fit, tune = ~self.train_tune, self.train_tune
        return replace(
            self,
            train_users=self.train_users[fit],
            train_items=self.train_items[fit],
            train_weights=self.train_weights[fit],
            train_tune=np.zeros(int(fit.sum()), bool),
            train=Csr.from_pairs(self.train_users[fit], self.train_items[fit], self.n_users),
            valid=Csr.from_pairs(self.train_users[tune], self.train_items[tune], self.n_users),
            valid_total=np.bincount(self.train_users[tune], minlength=self.n_users),
            fingerprint=self.fingerprint + ":selection",
        )

    def without_valid(self) -> Dataset:
        """All of train and nothing held out: what the final fit sees."""
        empty = np.zeros(0, np.int64)
        return replace(
            self,
            valid=Csr.from_pairs(empty, empty, self.n_users),
            valid_total=np.zeros(self.n_users, np.int64),
        )


SPLITS_SQL = """
    select s.user_id, cast(s.video_id as varchar) as video_id, s.split, s.tune, i.weight
    from interaction_splits as s
    join interactions as i on i.user_id = s.user_id and i.video_id = s.video_id
"""
NEGATIVES_SQL = """
    select user_id, cast(video_id as varchar) as video_id from negative_samples
"""


def read_dataset(warehouse: Warehouse, with_negatives: bool = True) -> Dataset:
    for table in ("interactions", "interaction_splits", "negative_samples"):
        if not warehouse.table_exists(table):
            raise UserError(
                f"table {table} is missing on the {warehouse.kind} target: "
                "load a CSV and run `dbt build` first"
            )
    splits = warehouse.read(SPLITS_SQL)
    negatives = warehouse.read(NEGATIVES_SQL) if with_negatives else None
    return build_dataset(splits, negatives)


def build_dataset(splits: pl.DataFrame, negatives: pl.DataFrame | None) -> Dataset:
    """Index users and videos (sorted ids, so indices are reproducible) and build the arrays."""
    train = splits.filter(pl.col("split") == "train")
    if train.is_empty():
        raise UserError(
            "no positives left after filtering: interaction_splits has no train rows "
            "(check positive_min_stars and the rejects in quality_rejects_by_reason)"
        )
    users = train.select(pl.col("user_id").unique().sort())
    videos = train.select(pl.col("video_id").unique().sort())
    user_index = users.with_row_index("u")
    video_index = videos.with_row_index("i")
    n_users = users.height

    def indexed(frame: pl.DataFrame) -> pl.DataFrame:
        # Sorted, because neither SQL nor polars joins promise an order, and the training
        # batches (a seeded permutation of these rows) must not depend on it.
        joined = frame.join(user_index, on="user_id").join(video_index, on="video_id", how="left")
        return joined.sort("u", "i", "video_id", nulls_last=True)

    tr = indexed(train)
    va = indexed(splits.filter(pl.col("split") == "valid"))
    valid_total = np.bincount(va["u"].to_numpy().astype(np.int64), minlength=n_users)
    va_known = va.filter(pl.col("i").is_not_null())
    neg = None
    if negatives is not None and not negatives.is_empty():
        ng = indexed(negatives).filter(pl.col("i").is_not_null())
        neg = (ng["u"].to_numpy().astype(np.int64), ng["i"].to_numpy().astype(np.int64))
    train_users = tr["u"].to_numpy().astype(np.int64)
    train_items = tr["i"].to_numpy().astype(np.int64)
    return Dataset(
        user_ids=users["user_id"].to_list(),
        video_ids=videos["video_id"].to_list(),
        train_users=train_users,
        train_items=train_items,
        train_weights=tr["weight"].to_numpy().astype(np.float32),
        train_tune=tr["tune"].to_numpy().astype(bool),
        train=Csr.from_pairs(train_users, train_items, n_users),
        valid=Csr.from_pairs(
            va_known["u"].to_numpy().astype(np.int64),
            va_known["i"].to_numpy().astype(np.int64),
            n_users,
        ),
        valid_total=valid_total,
        negatives=neg,
        fingerprint=fingerprint(splits),
    )


def fingerprint(splits: pl.DataFrame) -> str:
    """sha256 of the sorted split table: equal data gives an equal fingerprint on any engine."""
    canonical = splits.select("user_id", "video_id", "split").sort("user_id", "video_id")
    return hashlib.sha256(canonical.write_csv().encode()).hexdigest()[:16]
