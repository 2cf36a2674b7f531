"""Confidence intervals and the champion/challenger verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.ml.data import Csr, Dataset
from trainer.ml.evaluate import EvalResult, bootstrap_ci, evaluate, paired_difference_ci, top_k
from trainer.ml.model import LAYOUT, LEGACY_LAYOUT, publish_layout
from trainer.ml.scorers import embedding_scorer, popularity_scorer
from trainer.release.artifact import ModelArtifact
from trainer.release.gate import GateConfig, champion_scorer, judge


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_users() -> None:
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.3, size=200).astype(float)
    large = rng.binomial(1, 0.3, size=20_000).astype(float)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    # The normal approximation of a mean of Bernoullis: half-width ~ 1.96 * sqrt(p(1-p)/n).
    assert high - low == pytest.approx(2 * 1.96 * (0.3 * 0.7 / 200) ** 0.5, rel=0.25)
    large_low, large_high = bootstrap_ci(large)
    assert large_high - large_low < (high - low) / 5
    assert bootstrap_ci(np.array([])) == (0.0, 0.0)


def test_paired_difference_sees_a_consistent_small_gain_that_unpaired_would_miss() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(500)
    mean, low, high = paired_difference_ci(base + 0.01, base)
    assert (
        mean == pytest.approx(0.01) and low == pytest.approx(0.01) and high == pytest.approx(0.01)
    )


def result(values: np.ndarray) -> EvalResult:
    return EvalResult(
        {"recall@10": float(values.mean())}, {"recall@10": values}, np.arange(len(values))
    )


def test_verdicts() -> None:
    rng = np.random.default_rng(2)
    pop = result(rng.binomial(1, 0.1, 2_000).astype(float))
    good = result(np.clip(pop.per_user["recall@10"] + rng.binomial(1, 0.2, 2_000), 0, 1))
    cfg = GateConfig()
    first = judge(good, pop, None, cfg)
    assert first.passed is True and "champion" not in first.checks
    assert first.checks["vs_popularity"]["ci95"][0] > 0
    equal = judge(pop, pop, None, cfg)  # equal to popularity is not beating it
    assert equal.passed is False
    assert equal.checks["vs_popularity"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    # Slightly worse than the champion, within tolerance or not significant: passes.
    worse_a_bit = result(good.per_user["recall@10"] * (rng.random(2_000) > 0.01))
    assert judge(worse_a_bit, pop, good, cfg).passed is True
    # Clearly worse than the champion (a third of its hits lost) but still above popularity.
    much_worse = result(
        np.maximum(
            good.per_user["recall@10"] * (rng.random(2_000) > 0.33), pop.per_user["recall@10"]
        )
    )
    verdict = judge(much_worse, pop, good, cfg)
    assert verdict.passed is False and "regresses against the champion" in verdict.reason
    drop = -verdict.checks["vs_champion"]["mean"] / verdict.checks["champion"]
    assert drop > cfg.tolerance and verdict.checks["vs_champion"]["ci95"][1] < 0


# -- the AND rule against the champion, with numbers known exactly ---------------------------
# 64 users (a power of two) and dyadic values, so means and bootstrap means are exact floats.
N = 64
ZEROS = np.zeros(N)  # a popularity baseline every challenger below beats (all its values > 0)


def constant_gap(champion: float, challenger: float) -> tuple[EvalResult, EvalResult]:
    """Every user loses the same amount: the paired interval is the single point of the gap."""
    return result(np.full(N, challenger)), result(np.full(N, champion))


def test_a_large_drop_whose_interval_spans_zero_passes() -> None:
    # Half the users lose 0.875, half gain 0.625: mean -0.125 of a champion at 0.625 (-20%).
    champion = result(np.repeat([1.0, 0.25], N // 2))
    challenger = result(np.repeat([0.125, 0.875], N // 2))
    verdict = judge(challenger, result(ZEROS), champion, GateConfig())
    mean, (low, high) = verdict.checks["vs_champion"].values()
    assert mean == -0.125 and verdict.checks["champion"] == 0.625
    assert -mean / 0.625 > GateConfig().tolerance  # the drop alone would fail it
    assert low < 0 < high  # but it could be noise
    assert verdict.passed is True


def test_an_interval_below_zero_with_a_drop_within_tolerance_passes() -> None:
    challenger, champion = constant_gap(champion=0.5, challenger=0.5 - 1 / 64)  # -3.125%
    verdict = judge(challenger, result(ZEROS), champion, GateConfig())
    assert verdict.checks["vs_champion"] == {"mean": -1 / 64, "ci95": [-1 / 64, -1 / 64]}
    assert verdict.passed is True


def test_a_large_drop_with_an_interval_below_zero_fails() -> None:
    challenger, champion = constant_gap(champion=0.5, challenger=0.375)  # -25%
    verdict = judge(challenger, result(ZEROS), champion, GateConfig())
    assert verdict.checks["vs_champion"] == {"mean": -0.125, "ci95": [-0.125, -0.125]}
    assert verdict.checks["vs_popularity"] == {"mean": 0.375, "ci95": [0.375, 0.375]}
    assert verdict.passed is False


def test_the_tolerance_moves_the_decision() -> None:
    challenger, champion = constant_gap(champion=0.5, challenger=0.375)  # a drop of exactly 25%
    pop = result(ZEROS)
    assert judge(challenger, pop, champion, GateConfig(tolerance=0.2)).passed is False
    assert judge(challenger, pop, champion, GateConfig(tolerance=0.3)).passed is True
    # "exceeds": a drop equal to the tolerance is tolerated
    assert judge(challenger, pop, champion, GateConfig(tolerance=0.25)).passed is True
    # and the default 5% is what it falls back to
    assert judge(challenger, pop, champion, GateConfig()).passed is False


# -- the champion re-scored on a new split ---------------------------------------------------
def dataset(
    user_ids: list[str],
    video_ids: list[str],
    train: list[tuple[int, int]],
    valid: list[tuple[int, int]],
) -> Dataset:
    """A hand-made split from (user, video) index pairs; every valid video is in the catalog."""
    tu, ti = (np.array(column, dtype=np.int64) for column in zip(*train, strict=True))
    vu, vi = (np.array(column, dtype=np.int64) for column in zip(*valid, strict=True))
    n = len(user_ids)
    return Dataset(
        user_ids=user_ids,
        video_ids=video_ids,
        train_users=tu,
        train_items=ti,
        train_weights=np.ones(len(tu), np.float32),
        train_tune=np.zeros(len(tu), bool),
        train=Csr.from_pairs(tu, ti, n),
        valid=Csr.from_pairs(vu, vi, n),
        valid_total=np.bincount(vu, minlength=n),
        negatives=None,
        fingerprint="hand-made",
    )


def artifact(
    user_ids: list[str],
    video_ids: list[str],
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    layout: str = LAYOUT,
) -> ModelArtifact:
    return ModelArtifact(
        version="champion",
        config={},
        user_ids=user_ids,
        video_ids=video_ids,
        user_vectors=np.asarray(user_vectors, np.float32),
        item_vectors=np.asarray(item_vectors, np.float32),
        history_indptr=np.zeros(len(user_ids) + 1, np.int64),
        history_indices=np.zeros(0, np.int64),
        metrics={},
        fingerprint="old",
        tensors={},
        layout=layout,
    )


R = 1 / math.sqrt(2)
# A champion in the published layout: videos [completion, bias, v], users [0, 1, u]; every bias
# -0.5, so every score of a known video (bias + u . v) is at most 0.5 and, for user "b", below 0.
CHAMPION_VIDEOS = ["v0", "v1", "v2", "v3"]
LATENT = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
B_LATENT = np.array([[0.0, 1.0]])  # user "b" points at v1 (its train item)
# The new split: "new" is unknown to the champion, "b" is known (at index 1, its row 0); v2 left
# the catalog, vX and vY are new, and the order of the videos changed.
NEW_USERS = ["new", "b"]
NEW_VIDEOS = ["v3", "vX", "v0", "v1", "vY"]  # champion rows 3, -, 0, 1, -
NEW_TRAIN = [(0, 0), (0, 1), (0, 2), (1, 3)]  # new: v3, vX, v0; b: v1
NEW_VALID = [(0, 3), (1, 4)]  # new: v1; b: vY (a video the champion cannot rank)


def published_champion() -> ModelArtifact:
    users, videos = publish_layout(
        np.concatenate([np.ones((2, 1)), np.vstack([B_LATENT, [[1.0, 0.0]]])], axis=1),
        np.concatenate([np.full((4, 1), -0.5), LATENT], axis=1),
    )
    return artifact(["b", "a"], CHAMPION_VIDEOS, users, videos)  # "b" is its row 0


def test_champion_folds_in_unknown_users_from_their_known_train_history() -> None:
    champion = published_champion()
    data = dataset(NEW_USERS, NEW_VIDEOS, NEW_TRAIN, NEW_VALID)
    scores = champion_scorer(champion, data)(np.array([0, 1])).numpy()
    # "new" liked v3 and v0 (vX is unknown): [0, 1, normalise((0, -1) + (1, 0))], by hand.
    new_user = np.array([0.0, 1.0, R, -R], np.float32)
    known_cols, champion_rows = [0, 2, 3], [3, 0, 1]
    assert scores[0, known_cols] == pytest.approx(champion.item_vectors[champion_rows] @ new_user)
    assert scores[0, known_cols] == pytest.approx([-0.5 + R, -0.5 + R, -0.5 - R])
    # "b" is known: its own vector, looked up by ID, not by index.
    assert scores[1, known_cols] == pytest.approx(
        champion.item_vectors[champion_rows] @ champion.user_vectors[0]
    )
    assert scores[1, known_cols] == pytest.approx([-1.5, -0.5, 0.5])


def test_champion_with_the_legacy_layout_folds_in_with_that_layout() -> None:
    videos = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    champion = artifact(["a", "b"], CHAMPION_VIDEOS, np.eye(3)[:2], videos, LEGACY_LAYOUT)
    data = dataset(NEW_USERS, NEW_VIDEOS, NEW_TRAIN, NEW_VALID)
    scores = champion_scorer(champion, data)(np.array([0])).numpy()
    # The plain normalised mean of v3 and v0 over all coordinates: (R, -R, 0).
    assert scores[0, [0, 2, 3]] == pytest.approx([R, R, -R])


def test_champion_never_ranks_videos_it_does_not_know() -> None:
    champion = published_champion()
    data = dataset(NEW_USERS, NEW_VIDEOS, NEW_TRAIN, NEW_VALID)
    scorer = champion_scorer(champion, data)
    scores = scorer(np.array([0, 1])).numpy()
    assert np.isneginf(scores[:, [1, 4]]).all()
    assert np.isfinite(scores[:, [0, 2, 3]]).all()
    # "b" scores every known video below 0, so an unmasked unknown video (a zero vector, score 0)
    # would come first; masked, its known unseen videos v0 and v3 come first, in that order.
    assert top_k(scorer, np.array([1]), data.train, 2, data.n_items).tolist() == [[2, 0]]
    result = evaluate(scorer, data, ks=(1,), intervals=False)
    assert result.per_user["recall@1"].tolist() == [1.0, 0.0]  # b's valid vY is never a hit


def test_a_champion_identical_to_the_challenger_is_a_zero_difference_and_passes() -> None:
    # 4 users, 6 videos; each user's valid video is one popularity ranks low for them.
    train = [(0, 0), (0, 4), (1, 1), (1, 4), (2, 2), (2, 5), (3, 3), (3, 5)]
    valid = [(0, 1), (1, 0), (2, 3), (3, 2)]
    users, videos = [f"u{i}" for i in range(4)], [f"v{i}" for i in range(6)]
    data = dataset(users, videos, train, valid)
    targets = np.eye(6)[[1, 0, 3, 2]]  # each user points at its valid video
    user_vectors, video_vectors = publish_layout(
        np.concatenate([np.ones((4, 1)), targets], axis=1),
        np.concatenate([np.zeros((6, 1)), np.eye(6)], axis=1),
    )
    challenger = evaluate(embedding_scorer(user_vectors, video_vectors), data, ks=(1,))
    pop = evaluate(popularity_scorer(data), data, ks=(1,))
    champion_artifact = artifact(users, videos, user_vectors, video_vectors)
    champion = evaluate(champion_scorer(champion_artifact, data), data, ks=(1,))
    assert challenger.per_user["recall@1"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert pop.per_user["recall@1"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert champion.per_user["recall@1"].tolist() == [1.0, 1.0, 1.0, 1.0]
    verdict = judge(challenger, pop, champion, GateConfig(metric="recall@1"))
    assert verdict.checks["vs_champion"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert verdict.checks["champion"] == verdict.checks["challenger"] == 1.0
    assert verdict.checks["vs_popularity"] == {"mean": 1.0, "ci95": [1.0, 1.0]}
    assert verdict.passed is True


# -- paired against unpaired intervals --------------------------------------------------------
def test_overlapping_unpaired_intervals_with_a_paired_difference_that_excludes_zero() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(500)  # users differ a lot from each other ...
    better = base + 0.01 + rng.normal(0, 0.005, 500)  # ... far more than the models differ
    a_low, a_high = bootstrap_ci(better)
    b_low, b_high = bootstrap_ci(base)
    assert a_low < b_high and b_low < a_high  # the two intervals overlap
    mean, low, high = paired_difference_ci(better, base)
    assert mean == pytest.approx(0.01, abs=0.001)
    assert 0 < low < mean < high  # the paired interval of the difference excludes zero
    assert high - low < (b_high - b_low) / 10
