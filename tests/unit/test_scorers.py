"""Scorers that rank without scoring every video give the answer of scoring every video."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.ml.data import Csr
from trainer.ml.evaluate import top_k
from trainer.ml.model import LAYOUT_EXTRA, publish_layout
from trainer.ml.scorers import embedding_scorer


def _published_world(n_users: int, n_items: int, bias_spread: float, seed: int = 0):
    """Users and videos in the published layout (model.py), and train histories of every
    length up to 400 (a few heavy users own many of the highest-bias videos)."""
    rng = np.random.default_rng(seed)
    unit = rng.normal(size=(n_items, 14))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    bias = bias_spread * rng.standard_exponential(n_items)
    users = rng.normal(size=(n_users, 14))
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    user_rows, videos = publish_layout(
        np.concatenate([np.ones((n_users, 1)), users], axis=1),
        np.concatenate([bias[:, None], unit], axis=1),
    )
    top_bias = np.argsort(-bias)
    pairs = [(u, v) for u in range(n_users) for v in rng.choice(n_items, size=u % 7, replace=False)]
    pairs += [(u, v) for u in range(3) for v in top_bias[: 100 + 150 * u]]
    owner, item = np.array(pairs).T
    return user_rows, videos, Csr.from_pairs(owner, item, n_users)


@pytest.mark.parametrize("bias_spread", [1.0, 0.0])
def test_bounded_top_k_is_the_top_k_of_scoring_every_video(bias_spread: float) -> None:
    # A spread bias prunes most of the catalog; a zero bias prunes nothing (the ceiling of
    # every video is the same), and both must give full scoring's answer.
    users, videos, train = _published_world(300, 20_000, bias_spread)
    bounded = embedding_scorer(users, videos, LAYOUT_EXTRA)
    chunk = np.arange(300)
    fast = top_k(bounded, chunk, train, 20, 20_000)
    full = top_k(lambda c: bounded(c), chunk, train, 20, 20_000)  # no bound: every video
    scores = users @ videos.T
    assert np.allclose(np.take_along_axis(scores, fast, 1), np.take_along_axis(scores, full, 1))
    assert (fast == full).mean() > 0.99  # the same videos, but for float near-ties
    for u in chunk:
        assert not set(fast[u]) & set(train.indices[train.indptr[u] : train.indptr[u + 1]])
    share = bounded.scored_videos / (300 * 20_000)
    assert share < 0.5 if bias_spread else share >= 1.0  # no bias: every video, after the first


def test_bounded_top_k_scores_everything_when_users_differ_in_the_head() -> None:
    users, videos, train = _published_world(50, 6_000, 1.0)
    users[7, 1] = 0.5  # not the published [0, 1]: no ceiling holds for the chunk
    bounded = embedding_scorer(users, videos, LAYOUT_EXTRA)
    fast = top_k(bounded, np.arange(50), train, 10, 6_000)
    full = top_k(lambda c: bounded(c), np.arange(50), train, 10, 6_000)
    assert np.array_equal(fast, full)
    assert bounded.scored_videos == 50 * 6_000
