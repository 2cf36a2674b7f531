"""Side-by-side model quality on the split tables dbt built (`make bench-quality`).

    python -m benchmarks.quality CSV [--workdir DIR] [--cold-fraction 0.1] [--cold-likes 3]

Loads CSV into a fresh DuckDB file, runs `dbt build`, then on the same train/valid split fits
popularity, the project's two-tower (default config), EASE, and implicit's ALS and BPR (when
installed). A seeded tenth of the evaluated users is held out of training as *cold* users: each is
known only by up to `--cold-likes` liked videos (their first train positives) and is folded in
without retraining (two-tower: normalised mean of liked video vectors; ALS: its exact least-squares
fold-in; EASE: likes x B; BPR: mean of liked item factors; popularity: unchanged). Warm metrics
are over the other users. Hyper-parameters of the peers are chosen on the same valid split (small
grids below), as early stopping does for the two-tower.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.peers import Fitted, fit_ease, fit_implicit
from trainer.config import TrainConfig
from trainer.data import SPLITS_SQL, Csr, Dataset, build_dataset
from trainer.dbt import run_dbt
from trainer.evaluate import embedding_scorer, evaluate, popularity_scorer
from trainer.load import load_reviews
from trainer.model import embed_history
from trainer.profiles import Target
from trainer.report import table
from trainer.train import fit
from trainer.warehouse.duckdb import DuckDBWarehouse

EASE_L2 = (100.0, 300.0, 1000.0)
ALS_GRID = tuple(
    {"regularization": reg, "alpha": alpha, "iterations": 15}
    for reg in (0.01, 0.1, 1.0)
    for alpha in (1.0, 10.0, 40.0)
)
BPR_GRID = tuple(
    {"learning_rate": lr, "regularization": 0.01, "iterations": its}
    for lr in (0.01, 0.05)
    for its in (200, 500)
)


def build_splits(csv: Path, workdir: Path) -> pl.DataFrame:
    db = workdir / "warehouse.duckdb"
    db.unlink(missing_ok=True)
    with DuckDBWarehouse(db) as warehouse:
        load_reviews(warehouse, csv)
    run_dbt(Target("duckdb", "duckdb", "main", {"path": str(db)}), "build", quiet=True)
    with DuckDBWarehouse(db, read_only=True) as warehouse:
        return warehouse.read(SPLITS_SQL)


def split_cold(splits: pl.DataFrame, fraction: float, likes: int, seed: int):
    """(warm Dataset, cold Dataset over the same videos) with cold users' train rows held out."""
    has_valid = splits.filter(pl.col("split") == "valid")["user_id"].unique().sort()
    rng = np.random.default_rng(seed)
    cold_ids = sorted(
        rng.choice(has_valid.to_list(), int(len(has_valid) * fraction), replace=False)
    )
    is_cold = pl.col("user_id").is_in(cold_ids)
    warm = build_dataset(splits.filter(~is_cold), None)
    video_index = {v: i for i, v in enumerate(warm.video_ids)}
    cold_rows = splits.filter(is_cold).sort("user_id", "video_id")
    cold_rows = cold_rows.with_columns(
        pl.col("video_id").replace_strict(video_index, default=None).alias("i")
    )
    user_index = {u: i for i, u in enumerate(cold_ids)}
    cold_rows = cold_rows.with_columns(pl.col("user_id").replace_strict(user_index).alias("u"))
    train = cold_rows.filter((pl.col("split") == "train") & pl.col("i").is_not_null())
    train = train.filter(pl.int_range(pl.len()).over("u") < likes)
    valid = cold_rows.filter(pl.col("split") == "valid")
    known = valid.filter(pl.col("i").is_not_null())

    def csr(frame: pl.DataFrame) -> Csr:
        return Csr.from_pairs(frame["u"].to_numpy().astype(np.int64),
                              frame["i"].to_numpy().astype(np.int64), len(cold_ids))  # fmt: skip

    cold = Dataset(
        user_ids=cold_ids, video_ids=warm.video_ids,
        train_users=train["u"].to_numpy().astype(np.int64),
        train_items=train["i"].to_numpy().astype(np.int64),
        train_weights=np.ones(train.height, np.float32), train=csr(train), valid=csr(known),
        valid_total=np.bincount(valid["u"].to_numpy().astype(np.int64), minlength=len(cold_ids)),
        negatives=None, fingerprint="cold",
    )  # fmt: skip
    return warm, cold


def two_tower(warm: Dataset, seed: int, overrides: dict | None = None) -> Fitted:
    started = time.perf_counter()
    result = fit(warm, TrainConfig(seed=seed, **(overrides or {})), progress=False)
    seconds = time.perf_counter() - started
    users, items = result.model.export()

    def cold(likes: Csr) -> object:
        vectors = np.vstack([
            embed_history(items, likes.indices[likes.indptr[u]:likes.indptr[u + 1]].tolist())
            if likes.indptr[u + 1] > likes.indptr[u] else np.zeros(items.shape[1], np.float32)
            for u in range(len(likes.indptr) - 1)
        ])  # fmt: skip
        return embedding_scorer(vectors, items)

    return Fitted(embedding_scorer(users, items), cold, seconds)


def popularity(warm: Dataset) -> Fitted:
    scorer = popularity_scorer(warm)
    return Fitted(scorer, lambda likes: scorer, 0.0)


def best_on_valid(candidates: list[tuple[str, Fitted]], warm: Dataset) -> tuple[str, Fitted]:
    scored = [(evaluate(f.warm, warm, (10,)).metrics["ndcg@10"], name, f) for name, f in candidates]
    _, name, fitted = max(scored, key=lambda t: t[0])
    return name, fitted


def run(
    csv: Path, workdir: Path, fraction: float, likes: int, seed: int, variants: dict | None = None
) -> str:
    splits = build_splits(csv, workdir)
    warm, cold = split_cold(splits, fraction, likes, seed)
    models: dict[str, tuple[str, Fitted]] = {
        "popularity": ("", popularity(warm)),
        "two_tower": ("defaults", two_tower(warm, seed)),
        **{
            f"two_tower {k}": (str(v), two_tower(warm, seed, v))
            for k, v in (variants or {}).items()
        },
        "EASE": best_on_valid([(f"l2={l2:g}", fit_ease(warm, l2)) for l2 in EASE_L2], warm),
    }
    try:
        models["ALS (implicit)"] = best_on_valid(
            [(str(p), fit_implicit(warm, "als", 64, seed, **dict(p))) for p in ALS_GRID], warm
        )
        models["BPR (implicit)"] = best_on_valid(
            [(str(p), fit_implicit(warm, "bpr", 64, seed, **dict(p))) for p in BPR_GRID], warm
        )
    except ImportError:
        print("implicit is not installed: ALS and BPR skipped (pip install implicit)")
    rows = []
    for name, (params, fitted) in models.items():
        w = evaluate(fitted.warm, warm, (10,)).metrics
        c = evaluate(fitted.cold(cold.train), cold, (10,)).metrics
        rows.append([name, w["recall@10"], w["ndcg@10"], w["map@10"], w["coverage@10"],
                     c["recall@10"], fitted.train_seconds, params])  # fmt: skip
    header = (
        f"{csv.name}: {warm.n_users:,} warm users, {warm.n_items:,} videos, "
        f"{len(warm.train_users):,} train positives; {len(cold.user_ids):,} cold users "
        f"with <= {likes} likes\n"
    )
    return header + table(
        ["model", "recall@10", "ndcg@10", "map@10", "coverage@10", "cold recall@10",
         "train s", "chosen on valid"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--cold-fraction", type=float, default=0.1)
    parser.add_argument("--cold-likes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="extra two-tower configs, e.g. idd='{\"id_dropout\": 0.3}' (a sweep)",
    )
    args = parser.parse_args()
    variants = {v.split("=", 1)[0]: json.loads(v.split("=", 1)[1]) for v in args.variant}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(run(args.csv, workdir, args.cold_fraction, args.cold_likes, args.seed, variants))


if __name__ == "__main__":
    main()
