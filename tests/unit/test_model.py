"""The towers, the user-batched epochs, the loss tasks and reproducibility."""

from __future__ import annotations

import numpy as np
import torch

from tests.support.datasets import tiny_dataset
from trainer.ml.batches import user_batches
from trainer.ml.config import TrainConfig
from trainer.ml.data import Csr
from trainer.ml.model import TwoTower, fold_in, publish_layout
from trainer.ml.tasks import sampling_distribution, softmax_loss
from trainer.ml.train import fit


def test_the_user_tower_is_the_normalised_mean_of_the_pooled_videos() -> None:
    model = TwoTower(2, 3, 4)
    with torch.no_grad():
        items = model.item_vectors(torch.arange(3))
        got = model.user_vectors(
            torch.tensor([0, 1]), torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1])
        )
    expected = torch.nn.functional.normalize((items[0] + items[2]) / 2, dim=-1)
    assert torch.allclose(got[:, 0], torch.ones(2))  # the coordinate the bias multiplies
    assert torch.allclose(got[0, 1:], expected, atol=1e-6)
    assert torch.allclose(got[1, 1:], items[1], atol=1e-6)


def _trained_like_model(n_users: int = 30, n_items: int = 40, dim: int = 6) -> TwoTower:
    """Random towers with large, varied biases (what training on a long tail gives)."""
    torch.manual_seed(3)
    model = TwoTower(n_users, n_items, dim)
    with torch.no_grad():
        model.item_bias.weight.copy_(torch.randn(n_items, 1) * 2)
    return model


def test_published_cosine_ranks_exactly_as_the_model_scores() -> None:
    """pgvector and DuckDB rank by cosine; the published layout must give the model's order
    (bias + cosine), which the raw [bias, v] vectors would not."""
    model = _trained_like_model()
    history = Csr.from_pairs(np.repeat(np.arange(30), 3), np.arange(90) % 40, 30)
    with torch.no_grad():
        rows = torch.as_tensor(np.repeat(np.arange(30), 3))
        scored = model.user_vectors(torch.arange(30), rows, torch.as_tensor(history.indices))
        model_scores = (scored @ model.scoring_vectors().T).numpy()
    users, videos = model.export(history)
    assert np.allclose(np.linalg.norm(videos, axis=1), np.linalg.norm(videos[0]), atol=1e-5)
    cosine = (users / np.linalg.norm(users, axis=1, keepdims=True)) @ (
        videos / np.linalg.norm(videos, axis=1, keepdims=True)
    ).T
    assert np.array_equal(np.argsort(-cosine, axis=1), np.argsort(-model_scores, axis=1))
    raw = model.scoring_vectors().detach().numpy()
    raw_cosine = scored.numpy() @ (raw / np.linalg.norm(raw, axis=1, keepdims=True)).T
    assert not np.array_equal(np.argsort(-raw_cosine, axis=1), np.argsort(-model_scores, axis=1))


def test_exporting_some_users_gives_their_full_export_rows() -> None:
    """A selection epoch scores a sample of users: their vectors must be what the full export
    (the published one) gives them, whatever the batch boundaries."""
    model = _trained_like_model()
    rng = np.random.default_rng(0)
    history = Csr.from_pairs(rng.integers(0, 30, 200), rng.integers(0, 40, 200), 30)
    full_users, _ = model.export(history)
    some = np.array([17, 2, 29, 3])
    users = model.history_vectors(history, some, batch=3).numpy()
    assert np.allclose(users, full_users[some, 1:], atol=1e-6)  # published: [0, 1, u]


def test_a_user_folded_in_from_likes_is_the_user_tower_on_those_likes() -> None:
    model = _trained_like_model()
    with torch.no_grad():
        tower = model.user_vectors(torch.tensor([0]), torch.zeros(2, dtype=torch.long),
                                   torch.tensor([4, 9]))  # fmt: skip
    users, videos = publish_layout(tower.numpy(), model.scoring_vectors().detach().numpy())
    assert np.allclose(fold_in(videos, [4, 9]), users[0], atol=1e-6)


def test_legacy_artifacts_fold_in_as_the_normalised_mean() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    got = fold_in(vectors, [0, 1], layout="cosine")
    assert np.allclose(got, [2**-0.5, 2**-0.5])


def test_an_epoch_takes_every_positive_once_as_input_or_target() -> None:
    users = np.repeat(np.arange(50), np.arange(1, 51))  # 1..50 positives per user
    items = np.concatenate([np.arange(n) for n in range(1, 51)])
    train = Csr.from_pairs(users, items, 50)
    seen = []
    for batch in user_batches(
        train,
        np.ones(len(items), np.float32),
        16,
        0.5,
        np.random.default_rng(0),
        torch.device("cpu"),
    ):
        user_of = batch.users.numpy()
        pooled = set(zip(user_of[batch.input_rows.numpy()], batch.input_items.numpy(), strict=True))
        targets = set(
            zip(user_of[batch.target_rows.numpy()], batch.target_items.numpy(), strict=True)
        )
        assert not pooled & targets  # a target is never in its own user's input
        seen += [*pooled, *targets]
    assert sorted(seen) == sorted(zip(users, items, strict=True))  # each exactly once


def test_thin_users_pool_exactly_three_positives_and_predict_the_rest() -> None:
    users = np.repeat(np.arange(40), np.arange(1, 41))  # 1..40 positives per user
    items = np.concatenate([np.arange(n) for n in range(1, 41)])
    train = Csr.from_pairs(users, items, 40)
    inputs, targets = np.zeros(40, np.int64), np.zeros(40, np.int64)
    seen = []
    for batch in user_batches(
        train,
        np.ones(len(items), np.float32),
        8,
        0.5,
        np.random.default_rng(5),
        torch.device("cpu"),
        thin=1.0,
    ):
        user_of = batch.users.numpy()
        np.add.at(inputs, user_of[batch.input_rows.numpy()], 1)
        np.add.at(targets, user_of[batch.target_rows.numpy()], 1)
        seen += list(zip(user_of[batch.input_rows.numpy()], batch.input_items.numpy(), strict=True))
        seen += list(
            zip(user_of[batch.target_rows.numpy()], batch.target_items.numpy(), strict=True)
        )
    counts = np.arange(1, 41)
    heavy = counts > 3
    assert (inputs[heavy] == 3).all() and (targets[heavy] == counts[heavy] - 3).all()
    assert inputs[~heavy].sum() + targets[~heavy].sum() == counts[~heavy].sum()  # split as usual
    assert sorted(seen) == sorted(zip(users, items, strict=True))  # each positive exactly once


def test_thin_inputs_are_drawn_at_random_not_the_first_three() -> None:
    train = Csr.from_pairs(np.zeros(30, np.int64), np.arange(30), 1)
    rng = np.random.default_rng(6)
    pooled = set()
    for _ in range(20):
        batch = next(
            user_batches(train, np.ones(30, np.float32), 1, 0.5, rng, torch.device("cpu"), thin=1.0)
        )
        pooled |= set(batch.input_items.tolist())
    assert len(pooled) > 20  # a fixed choice would pool the same three every epoch


def test_thin_users_targets_weigh_what_their_holdout_split_would() -> None:
    users = np.repeat(np.arange(40), np.arange(1, 41))
    train = Csr.from_pairs(users, np.concatenate([np.arange(n) for n in range(1, 41)]), 40)
    counts = np.arange(1, 41)

    def target_weight_per_user(balance: bool) -> np.ndarray:
        total = np.zeros(40)
        for batch in user_batches(
            train, np.ones(len(users), np.float32), 8, 0.5, np.random.default_rng(5),
            torch.device("cpu"), thin=1.0, thin_balance=balance,
        ):  # fmt: skip
            user_of = batch.users.numpy()[batch.target_rows.numpy()]
            np.add.at(total, user_of, batch.target_weights.numpy())
        return total

    heavy = counts > 3
    balanced, plain = target_weight_per_user(True), target_weight_per_user(False)
    np.testing.assert_allclose(balanced[heavy], 0.5 * counts[heavy], rtol=1e-5)
    np.testing.assert_allclose(plain[heavy], counts[heavy] - 3)  # unbalanced: 1 per target
    np.testing.assert_allclose(balanced[~heavy], plain[~heavy])  # the usual split is untouched


def test_own_videos_are_never_negatives_full_or_sampled() -> None:
    # One user owns every video: nothing is left to be a negative, so the loss is exactly 0.
    model = TwoTower(1, 6, 4)
    train = Csr.from_pairs(np.zeros(6, np.int64), np.arange(6), 1)
    batch = next(
        user_batches(
            train, np.ones(6, np.float32), 1, 0.5, np.random.default_rng(1), torch.device("cpu")
        )
    )
    assert len(batch.target_items) and len(batch.input_items)
    generator = torch.Generator().manual_seed(0)
    full = softmax_loss(model, batch, 0.2, negatives=10, generator=generator)
    q = sampling_distribution(np.ones(6, np.int64), 0.75)
    sampled = softmax_loss(model, batch, 0.2, negatives=3, generator=generator, q=q)
    assert float(full.detach()) == 0.0 and float(sampled.detach()) == 0.0


def test_sampled_softmax_with_logq_estimates_the_full_one() -> None:
    torch.manual_seed(0)
    model = TwoTower(4, 300, 8)
    train = Csr.from_pairs(np.repeat(np.arange(4), 5), np.arange(20), 4)
    batch = next(
        user_batches(
            train, np.ones(20, np.float32), 4, 0.5, np.random.default_rng(2), torch.device("cpu")
        )
    )
    full = float(softmax_loss(model, batch, 0.5, 1000, torch.Generator().manual_seed(0)).detach())
    q = sampling_distribution(np.arange(300) % 7, 0.75)
    draws = [
        float(softmax_loss(model, batch, 0.5, 200, torch.Generator().manual_seed(s), q=q).detach())
        for s in range(20)
    ]
    assert abs(np.mean(draws) - full) < 0.05 * full
    unc = float(
        softmax_loss(model, batch, 0.5, 200, torch.Generator().manual_seed(0), q, False).detach()
    )
    assert unc < full - 0.5  # without the correction the denominator is far too small


def test_training_is_deterministic_for_a_seed() -> None:
    data = tiny_dataset()
    cfg = TrainConfig(
        embedding_dim=8, epochs=3, batch_size=1, full_softmax_items=2, negatives=2, seed=5
    )
    a = fit(data, cfg, progress=False).model.export(data.train)
    b = fit(data, cfg, progress=False).model.export(data.train)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = fit(data, TrainConfig(**{**cfg.to_dict(), "seed": 6}), progress=False)
    assert not np.array_equal(a[1], c.model.export(data.train)[1])


def test_row_order_of_the_split_table_does_not_change_the_dataset() -> None:
    import polars as pl

    from trainer.ml.data import build_dataset

    splits = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c"],
            "video_id": ["v1", "v2", "v1", "v3", "v2"],
            "split": ["train", "valid", "train", "train", "train"],
            "tune": [False, False, True, False, False],
            "weight": [1.0, 0.8, 1.0, 0.8, 1.0],
        }
    )
    one = build_dataset(splits, None)
    other = build_dataset(splits.reverse(), None)
    assert np.array_equal(one.train_users, other.train_users)
    assert np.array_equal(one.train_items, other.train_items)
    assert np.array_equal(one.train_tune, other.train_tune)
    assert one.fingerprint == other.fingerprint


def test_bce_scores_targets_as_ones_and_the_sql_negatives_as_zeros() -> None:
    from trainer.ml.tasks import PointwiseHead, bce_loss

    model, head = TwoTower(2, 6, 4), PointwiseHead()
    train = Csr.from_pairs(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]), 2)
    negatives = Csr.from_pairs(np.array([0, 1]), np.array([4, 5]), 2)
    batch = next(
        user_batches(train, np.ones(4, np.float32), 2, 0.5, np.random.default_rng(3),
                     torch.device("cpu"), negatives)
    )  # fmt: skip
    assert sorted(batch.negatives.tolist()) == [4, 5]
    loss = bce_loss(model, head, batch)
    loss.backward()
    assert float(loss.detach()) > 0
    grad = model.item_embedding.weight.grad
    pooled_users = set(batch.users[batch.input_rows].tolist())
    pushed = [v for u, v in ((0, 4), (1, 5)) if u in pooled_users]
    assert pushed  # a user with a pooled history: its negative is pushed away
    assert all(grad[v].abs().sum() > 0 for v in pushed)
