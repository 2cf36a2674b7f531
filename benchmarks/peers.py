"""Peer models for the quality benchmark, each fit on the same warm train split.

Every peer exposes the same two scorers as the two-tower: one for the warm users it was trained
on, and one for cold users known only by a few liked videos (folded in without retraining).
EASE (Steck 2019) is a few lines of numpy; ALS and BPR come from `implicit` (optional).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trainer.ml.data import Csr, Dataset
from trainer.ml.scorers import Scorer


@dataclass
class Fitted:
    warm: Scorer
    cold: Callable[[Csr], Scorer]  # likes of the cold users -> scorer over those users
    train_seconds: float
    note: str = ""  # how it was chosen (the two-tower: its tune figure and epoch)


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    """A scipy CSR matrix; scipy comes with the `[bench]` extra (an ImportError here makes
    benchmarks.quality skip the peers with one line, and the two-tower still runs)."""
    import scipy.sparse as sp

    data = np.ones(len(users), dtype=np.float32)
    return sp.csr_matrix((data, (users, items)), shape=(n_users, n_items))


def likes_matrix(likes: Csr, n_items: int):
    rows = np.repeat(np.arange(len(likes.indptr) - 1), likes.lengths())
    return interaction_matrix(rows, likes.indices, len(likes.indptr) - 1, n_items)


def rows_scorer(scores: Callable[[np.ndarray], np.ndarray]) -> Scorer:
    return lambda chunk: torch.as_tensor(np.asarray(scores(chunk), dtype=np.float32))


def fit_ease(data: Dataset, l2: float) -> Fitted:
    started = time.perf_counter()
    x = interaction_matrix(data.train_users, data.train_items, data.n_users, data.n_items)
    gram = (x.T @ x).toarray().astype(np.float32)  # float32: half the memory and time
    gram[np.diag_indices_from(gram)] += l2
    p = np.linalg.inv(gram)
    b = (-p / np.diag(p)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    seconds = time.perf_counter() - started
    return Fitted(
        warm=rows_scorer(lambda chunk: x[chunk] @ b),
        cold=lambda likes: rows_scorer(lambda chunk: likes_matrix(likes, data.n_items)[chunk] @ b),
        train_seconds=seconds,
    )


def fit_implicit(data: Dataset, kind: str, factors: int, seed: int, **params) -> Fitted:
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.cpu.als import AlternatingLeastSquares

    x = interaction_matrix(data.train_users, data.train_items, data.n_users, data.n_items)
    started = time.perf_counter()
    if kind == "als":
        model = AlternatingLeastSquares(factors=factors, random_state=seed, **params)
        model.fit(x, show_progress=False)
    else:
        model = BayesianPersonalizedRanking(factors=factors, random_state=seed, **params)
        model.fit(x, show_progress=False)
    seconds = time.perf_counter() - started
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)

    def cold(likes: Csr) -> Scorer:
        m = likes_matrix(likes, data.n_items)
        if kind == "als":  # ALS folds a new user in exactly: one least-squares solve
            vectors = np.asarray(model.recalculate_user(np.arange(m.shape[0]), m))
        else:  # BPR has no fold-in: the mean of the liked videos' factors
            counts = np.maximum(np.asarray(m.sum(axis=1)), 1)
            vectors = np.asarray(m @ items) / counts
        return rows_scorer(lambda chunk: vectors[chunk] @ items.T)

    return Fitted(rows_scorer(lambda chunk: users[chunk] @ items.T), cold, seconds)
