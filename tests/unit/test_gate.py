"""Confidence intervals and the champion/challenger verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.ml.evaluate import EvalResult, bootstrap_ci, paired_difference_ci
from trainer.release.gate import GateConfig, judge


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
    assert judge(good, pop, None, cfg).passed
    assert not judge(pop, pop, None, cfg).passed  # equal to popularity is not beating it
    # Slightly worse than the champion, within tolerance or not significant: passes.
    worse_a_bit = result(good.per_user["recall@10"] * (rng.random(2_000) > 0.01))
    assert judge(worse_a_bit, pop, good, cfg).passed
    # Clearly worse than the champion (a third of its hits lost) but still above popularity.
    much_worse = result(
        np.maximum(
            good.per_user["recall@10"] * (rng.random(2_000) > 0.33), pop.per_user["recall@10"]
        )
    )
    verdict = judge(much_worse, pop, good, cfg)
    assert not verdict.passed and "regresses against the champion" in verdict.reason
