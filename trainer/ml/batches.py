"""User-batched epochs: each step takes a batch of users with all of their train positives.

Every epoch, each train positive is drawn, with probability `holdout`, as a *target* (to predict)
and otherwise as *input* (pooled into the user tower). The model so learns to find a user's other
videos from part of their history — the task evaluation poses — and never sees a target in its
own input. An epoch touches each train positive once: its cost is linear in the number of train
positives whatever the history lengths (no per-row history recomputation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from trainer.ml.data import Csr


@dataclass(frozen=True)
class UserBatch:
    users: torch.Tensor  # [B] user indices
    input_rows: torch.Tensor  # batch row of each pooled history item
    input_items: torch.Tensor
    target_rows: torch.Tensor  # batch row of each target
    target_items: torch.Tensor
    target_weights: torch.Tensor  # per target (stars / 5, or 1)
    negatives: torch.Tensor | None = None  # bce: the SQL negatives of the batch's users
    negative_rows: torch.Tensor | None = None


def user_batches(
    train: Csr,
    weights: np.ndarray,
    batch_size: int,
    holdout: float,
    rng: np.random.Generator,
    device: torch.device,
    negatives: Csr | None = None,
    thin: float = 0.0,
    thin_inputs: int = 3,
    thin_balance: bool = True,
) -> Iterator[UserBatch]:
    """One epoch of batches in a seeded random user order. `weights` is aligned with
    `train.indices`; `negatives` (per user, for bce) ride along with their users.

    `thin`: this share of the users with more than `thin_inputs` positives pool only
    `thin_inputs` of them (drawn at random) this epoch and predict all the others, as a new user
    folded in from a few likes must be served; the rest split by `holdout`. With `thin_balance`,
    a thin user's targets are weighted holdout * n / (n - thin_inputs), so their weights total
    what the user's holdout split would have (holdout * n): otherwise a heavy user's thin epoch
    carries about twice the loss of a normal one and the few-likes task crowds out the rest."""
    n_users = len(train.indptr) - 1
    draw = rng.random(len(train.indices))
    is_target = draw < holdout
    if thin > 0:
        counts = np.diff(train.indptr)
        thin_users = np.flatnonzero((rng.random(n_users) < thin) & (counts > thin_inputs))
        rows, positions = train.rows_of(thin_users)  # rows ascend: one block per user
        by_draw = positions[np.argsort(rows + draw[positions], kind="stable")]
        first = np.cumsum(counts[thin_users]) - counts[thin_users]
        rank = np.arange(len(positions)) - first[rows]  # 0, 1, ... within each user's block
        is_target[by_draw] = rank >= thin_inputs
        if thin_balance:
            n = counts[thin_users]
            weights = weights.copy()  # the caller's array stays as given
            weights[positions] *= (holdout * n / (n - thin_inputs))[rows]
    order = rng.permutation(n_users)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values).to(device)

    for start in range(0, len(order), batch_size):
        users = order[start : start + batch_size]
        rows, positions = train.rows_of(users)
        target = is_target[positions]
        negative_rows = negative_items = None
        if negatives is not None:
            neg_rows, neg_positions = negatives.rows_of(users)
            negative_rows, negative_items = (
                tensor(neg_rows),
                tensor(negatives.indices[neg_positions]),
            )
        yield UserBatch(
            users=tensor(users),
            input_rows=tensor(rows[~target]),
            input_items=tensor(train.indices[positions[~target]]),
            target_rows=tensor(rows[target]),
            target_items=tensor(train.indices[positions[target]]),
            target_weights=tensor(weights[positions[target]]),
            negatives=negative_items,
            negative_rows=negative_rows,
        )
