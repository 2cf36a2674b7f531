"""benchmarks.quality's nested split: how defaults are chosen without reading valid."""

import numpy as np
import polars as pl

from benchmarks.quality import nested_splits


def _splits(seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(60), 12)
    frame = pl.DataFrame({
        "user_id": [f"u{u:02d}" for u in users],
        "video_id": [str(v) for v in np.tile(np.arange(12), 60)],
        "split": rng.choice(["train", "valid"], len(users), p=[0.8, 0.2]).tolist(),
        "tune": (rng.random(len(users)) < 0.1).tolist(),
        "weight": np.ones(len(users)),
    })  # fmt: skip
    return frame.with_columns(pl.col("tune") & (pl.col("split") == "train"))


def test_nested_split_never_holds_valid_and_turns_tune_into_valid() -> None:
    splits = _splits(0)
    inner = nested_splits(splits, 42)
    outer_valid = splits.filter(pl.col("split") == "valid").select("user_id", "video_id")
    assert inner.join(outer_valid, on=["user_id", "video_id"]).is_empty()
    outer_tune = splits.filter(pl.col("tune")).select("user_id", "video_id").sort(pl.all())
    inner_valid = inner.filter(pl.col("split") == "valid").select("user_id", "video_id")
    assert inner_valid.sort(pl.all()).equals(outer_tune)
    assert inner.filter(pl.col("tune"))["split"].unique().to_list() == ["train"]


def test_nested_split_does_not_depend_on_the_row_order_the_warehouse_returns() -> None:
    splits = _splits(1)
    shuffled = splits.sample(fraction=1.0, shuffle=True, seed=3)
    key = ["user_id", "video_id"]
    first = nested_splits(splits, 42).sort(key)
    assert first["tune"].sum() > 0
    assert first.equals(nested_splits(shuffled, 42).sort(key))
