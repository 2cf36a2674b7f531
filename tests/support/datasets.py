"""Hand-made datasets small enough to check metrics by hand."""

from __future__ import annotations

import numpy as np

from trainer.ml.data import Csr, Dataset


def tiny_dataset() -> Dataset:
    # 2 users, 5 items. User 0 trained on items 0, 1; valid: item 2 and one outside the catalog.
    train_users = np.array([0, 0, 1, 1, 1])
    train_items = np.array([0, 1, 0, 3, 4])
    return Dataset(
        user_ids=["u0", "u1"],
        video_ids=[f"v{i}" for i in range(5)],
        train_users=train_users,
        train_items=train_items,
        train_weights=np.ones(5, np.float32),
        train_tune=np.zeros(5, bool),
        train=Csr.from_pairs(train_users, train_items, 2),
        valid=Csr.from_pairs(np.array([0, 1]), np.array([2, 1]), 2),
        valid_total=np.array([2, 1]),
        negatives=None,
        fingerprint="x",
    )
