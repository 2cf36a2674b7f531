"""Scorers: what the evaluation ranks with. A scorer maps user indices to a [users, videos]
score matrix; some also rank without one, and `trainer/ml/evaluate.py: top_k` uses that:
  - BoundedScorer.top_k: dot products whose ceiling per video lets it skip most of a catalog,
    exactly (the two-tower's published vectors, and its tune check);
  - PopularityScorer.order: one ranking for every user;
  - RandomScorer.sample: uniform draws instead of uniform scores on big catalogs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from trainer.ml.data import Csr, Dataset

Scorer = Callable[[np.ndarray], torch.Tensor]  # user indices -> [len(users), n_items] scores

SCORES_PER_CHUNK = 1 << 25  # user x video scores held at once (128 MiB of float32)


def owned(chunk: np.ndarray, train: Csr) -> tuple[np.ndarray, np.ndarray]:
    """(row in chunk, video) of each train positive of the chunk's users."""
    lengths = train.indptr[chunk + 1] - train.indptr[chunk]
    rows = np.repeat(np.arange(len(chunk)), lengths)
    cols = np.concatenate([train.indices[train.indptr[u] : train.indptr[u + 1]] for u in chunk])
    return rows, cols


def masked_top_k(scores: torch.Tensor, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k best scores once (rows, cols) are masked to -inf; -1 for
    a slot with nothing left. Writes into `scores`."""
    scores[torch.as_tensor(rows), torch.as_tensor(cols, dtype=torch.long)] = float("-inf")
    best = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return torch.where(best.values > float("-inf"), best.indices, -1).numpy()


class BoundedScorer:
    """Dot-product scores, user row . video row, whose first `head` coordinates are the same
    for every user: the published layout's [0, 1] (head 2), the tune check's [1] (head 1).
    Then no video can score above head . its first coordinates + max |user rest| * |its rest|
    (Cauchy-Schwarz), one ceiling per video for all of a chunk's users, and top_k scores only
    the videos whose ceiling still reaches some user's k-th best: first the videos with the
    highest ceilings, then, if a ceiling beyond them reaches the lowest k-th best found (a
    lower bound of the true one), every video up to there. The result is the top k of scoring
    every video (ties aside). On a long tail the bias carries the ceiling, and most videos'
    ceilings are below every user's 10th best: the check scores a fraction of the catalog.
    `rows` maps user indices to rows of `users` (default: the same)."""

    FIRST = 4096  # videos scored first, at least (README, "Benchmarks": what the check costs)

    def __init__(
        self, users: torch.Tensor, items: torch.Tensor, head: int, rows: np.ndarray | None = None
    ) -> None:
        self.users, self.items, self.head, self.rows = users, items, head, rows
        self.rest_norms = items[:, head:].norm(dim=1)
        self.scored_videos = 0  # user x video scores computed by top_k so far (benchmarks, tests)
        self._sorted: tuple[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    def _rows(self, chunk: np.ndarray) -> torch.Tensor:
        return self.users[torch.as_tensor(chunk if self.rows is None else self.rows[chunk])]

    def __call__(self, chunk: np.ndarray) -> torch.Tensor:
        return self._rows(chunk) @ self.items.T

    def top_k(self, chunk: np.ndarray, train: Csr, k: int) -> np.ndarray:
        users = self._rows(chunk)
        rows, cols = owned(chunk, train)
        head = users[:1, : self.head]
        n_items = len(self.items)
        if self.head == 0 or not bool((users[:, : self.head] == head).all()):
            self.scored_videos += len(chunk) * n_items
            return masked_top_k(users @ self.items.T, rows, cols, k)
        reach = float(users[:, self.head :].norm(dim=1).max()) if len(users) else 0.0
        order, ceiling, position = self._ceilings(head[0], reach)
        longest = int(np.bincount(rows, minlength=1).max(initial=0))
        size = min(n_items, max(self.FIRST, 4 * (k + longest)))
        while True:
            scores = users @ self.items[order[:size]].T
            self.scored_videos += len(chunk) * size
            at = position[torch.as_tensor(cols, dtype=torch.long)].numpy()
            inside = at < size
            top = masked_top_k(scores, rows[inside], at[inside], k)
            if size == n_items:
                break
            kth = scores.gather(1, torch.as_tensor(np.maximum(top[:, -1:], 0)))
            floor = float(torch.where(torch.as_tensor(top[:, -1:] >= 0), kth, -torch.inf).min())
            if float(ceiling[size]) < floor:
                break
            reached = int(torch.searchsorted(-ceiling, torch.tensor([-floor]), right=True))
            size = min(n_items, max(reached, 2 * size))
        return torch.where(torch.as_tensor(top >= 0), order[torch.as_tensor(top)], -1).numpy()

    def _ceilings(
        self, head: torch.Tensor, reach: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(videos by descending ceiling, those ceilings, each video's place in that order).
        The published layout gives every chunk the same head and reach: sorted once, kept."""
        key = (tuple(head.tolist()), reach)
        if self._sorted is None or self._sorted[0] != key:
            # A hair above the exact ceiling, so float rounding never drops a video that ties.
            ceiling = self.items[:, : self.head] @ head + reach * self.rest_norms + 1e-4
            order = torch.argsort(ceiling, descending=True)
            position = torch.empty_like(order)
            position[order] = torch.arange(len(order))
            self._sorted = (key, (order, ceiling[order], position))
        return self._sorted[1]


def embedding_scorer(user_vectors: np.ndarray, item_vectors: np.ndarray, head: int = 0) -> Scorer:
    """Published (or any) vectors; `head` as in BoundedScorer (0: score every video)."""
    return BoundedScorer(torch.as_tensor(user_vectors), torch.as_tensor(item_vectors), head)


class PopularityScorer:
    """Train counts as every user's scores; `order` (most reviewed first, ties by index) lets
    top_k rank without a users x videos matrix."""

    def __init__(self, data: Dataset) -> None:
        counts = data.item_counts()
        self.counts = torch.as_tensor(counts, dtype=torch.float32)
        self.order = np.lexsort((np.arange(len(counts)), -counts))

    def __call__(self, chunk: np.ndarray) -> torch.Tensor:
        return self.counts.expand(len(chunk), -1)


def popularity_scorer(data: Dataset) -> Scorer:
    return PopularityScorer(data)


class RandomScorer:
    """Uniform random scores. For big catalogs `sample` gives top_k the same ranking's top k
    without a users x videos matrix: k videos drawn uniformly without replacement from those
    outside the user's train positives (the top k of uniform scores over them), seeded by
    (seed, user). A draw costs about 100 us a user and a scored row about 5 ns a video, so
    catalogs up to `sample_above` videos are scored whole instead (`sample` is None)."""

    def __init__(self, n_items: int, seed: int, sample_above: int = 20_000) -> None:
        self.n_items, self.seed, self.sample_above = n_items, seed, sample_above

    @property
    def sample(self) -> Callable[[np.ndarray, Csr, int], np.ndarray] | None:
        return self._sample if self.n_items > self.sample_above else None

    def __call__(self, chunk: np.ndarray) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(chunk[0]))
        return torch.rand(len(chunk), self.n_items, generator=generator)

    def _sample(self, users: np.ndarray, train: Csr, k: int) -> np.ndarray:
        out = np.full((len(users), k), -1, dtype=np.int64)
        for row, user in enumerate(users):
            owned = train.indices[train.indptr[user] : train.indptr[user + 1]]
            take = min(k, self.n_items - len(owned))
            rng = np.random.default_rng([self.seed, int(user)])
            # take + |owned| distinct draws hold at least `take` videos the user does not own,
            # in a uniformly random order: the first `take` of them are the sample.
            drawn = rng.choice(self.n_items, size=take + len(owned), replace=False)
            out[row, :take] = drawn[~np.isin(drawn, owned)][:take]
        return out


def random_scorer(data: Dataset, seed: int) -> Scorer:
    return RandomScorer(data.n_items, seed)
