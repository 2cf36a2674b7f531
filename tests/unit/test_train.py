"""Model selection never sees the valid split, and training cost follows the positives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trainer.ml.train as train_module
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.jobs.training import train_and_evaluate
from trainer.ml.config import TrainConfig
from trainer.ml.data import read_dataset


def _pairs(csr) -> set[tuple[int, int]]:
    rows = np.repeat(np.arange(len(csr.indptr) - 1), csr.lengths())
    return set(zip(rows.tolist(), csr.indices.tolist(), strict=True))


def test_the_valid_split_is_never_read_before_the_final_evaluation(
    synth_warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DuckDBWarehouse(synth_warehouse, read_only=True) as warehouse:
        full = read_dataset(warehouse, with_negatives=False)
    valid = _pairs(full.valid)
    assert valid
    seen: list[dict] = []
    real_fit = train_module.fit

    def spying_fit(data, cfg, progress=True, select=True):
        seen.append(
            {
                "select": select,
                "epochs": cfg.epochs,
                "held_out": _pairs(data.valid),
                "trained": set(
                    zip(data.train_users.tolist(), data.train_items.tolist(), strict=True)
                ),
            }
        )
        result = real_fit(data, cfg, progress, select)
        seen[-1]["model"] = result.model
        return result

    monkeypatch.setattr(train_module, "fit", spying_fit)
    cfg = TrainConfig(embedding_dim=16, epochs=3, patience=1)
    with DuckDBWarehouse(synth_warehouse, read_only=True) as warehouse:
        trained = train_and_evaluate(warehouse, cfg, progress=False)
    selection, refit = seen
    tune = {
        (int(u), int(i))
        for u, i, t in zip(full.train_users, full.train_items, full.train_tune, strict=True)
        if t
    }
    assert selection["select"] and selection["held_out"] == tune  # scored on the tune slice
    assert not selection["trained"] & tune and not selection["held_out"] & valid
    assert not refit["select"] and refit["held_out"] == set()  # refit: nothing to score on
    assert refit["trained"] == _pairs(full.train)
    assert not (selection["trained"] | refit["trained"]) & valid
    # The valid split is read once, after training: the report's two_tower row.
    assert trained.evaluations["two_tower"].metrics["users"] == float((full.valid_total > 0).sum())
    # The refit trains a fresh model for the epoch count selection chose.
    assert refit["epochs"] == trained.artifact.metrics["best_epoch"] >= 1
    assert refit["model"] is not selection["model"]


HEAVY = """
import json, resource, numpy as np, polars as pl
from trainer.ml.config import TrainConfig
from trainer.ml.data import build_dataset
from trainer.ml.train import fit
n = {n}
users = ["heavy"] * n + [f"u{{i}}" for i in range(2000) for _ in range(3)]
videos = [f"v{{i}}" for i in range(n)]
videos += [f"v{{(i * 7 + j) % n}}" for i in range(2000) for j in range(3)]
splits = pl.DataFrame({{"user_id": users, "video_id": videos, "split": "train", "tune": False,
                       "weight": 1.0}}).unique(["user_id", "video_id"])
data = build_dataset(splits, None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = fit(data, TrainConfig(embedding_dim=64, epochs=2), progress=False, select=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_mib": (after - before) / 1024, "epochs": len(result.epochs)}}))
"""


def test_a_user_with_thousands_of_reviews_trains_in_bounded_memory() -> None:
    # 20,000 positives for one user: per-row history pooling would gather 20,000^2 = 4e8 item
    # vectors (about 100 GB at 64 dims); a user-batched epoch gathers each positive once.
    out = subprocess.run(
        [sys.executable, "-c", HEAVY.format(n=20_000)], capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["epochs"] == 2
    assert report["grew_mib"] < 1024, report
