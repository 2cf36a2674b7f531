"""The towers, the loss tasks and reproducibility."""

from __future__ import annotations

import numpy as np
import torch

from tests.test_evaluate import tiny_dataset
from trainer.config import TrainConfig
from trainer.data import Csr
from trainer.model import TwoTower, embed_history
from trainer.tasks import softmax_loss
from trainer.train import fit


def test_leave_out_removes_the_target_from_the_history_mean() -> None:
    history = Csr.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1)
    model = TwoTower(1, 3, 4, history)
    with torch.no_grad():
        model.user_embedding.weight.zero_()
        items = model.item_vectors(torch.arange(3))
        got = model.user_vectors(torch.tensor([0]), leave_out=torch.tensor([1]))
    expected = torch.nn.functional.normalize((items[0] + items[2]) / 2, dim=-1)
    assert torch.allclose(got[0], expected, atol=1e-6)


def test_new_user_vector_is_the_normalised_mean_of_liked_videos() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    got = embed_history(vectors, [0, 1])
    assert np.allclose(got, [2**-0.5, 2**-0.5])


def test_softmax_loss_masks_duplicate_items_in_the_batch() -> None:
    model = TwoTower(2, 3, 4, None)
    users = torch.tensor([0, 1])
    same = softmax_loss(model, users, torch.tensor([1, 1]), None, None, 1.0)
    # Two rows with the same item: each row's only other logit is masked, so the loss is 0.
    assert float(same.detach()) == 0.0


def test_training_is_deterministic_for_a_seed() -> None:
    data = tiny_dataset()
    cfg = TrainConfig(embedding_dim=8, epochs=3, batch_size=2, uniform_negatives=2, seed=5)
    a = fit(data, cfg, progress=False).model.export()
    b = fit(data, cfg, progress=False).model.export()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = fit(data, TrainConfig(**{**cfg.to_dict(), "seed": 6}), progress=False).model.export()
    assert not np.array_equal(a[1], c[1])


def test_row_order_of_the_split_table_does_not_change_the_dataset() -> None:
    import polars as pl

    from trainer.data import build_dataset

    splits = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c"],
            "video_id": ["v1", "v2", "v1", "v3", "v2"],
            "split": ["train", "valid", "train", "train", "train"],
            "weight": [1.0, 0.8, 1.0, 0.8, 1.0],
        }
    )
    one = build_dataset(splits, None)
    other = build_dataset(splits.reverse(), None)
    assert np.array_equal(one.train_users, other.train_users)
    assert np.array_equal(one.train_items, other.train_items)
    assert one.fingerprint == other.fingerprint
