"""Metrics against hand-computed cases, and the masking of train items."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.support.datasets import tiny_dataset
from trainer.ml.data import Csr
from trainer.ml.evaluate import evaluate, hit_matrix, ranking_metrics, top_k
from trainer.ml.scorers import RandomScorer, popularity_scorer


def test_metrics_match_a_hand_computed_example() -> None:
    # One user with 3 valid items; hits at ranks 1 and 3 of the top 4.
    hits = np.array([[True, False, True, False]])
    m = ranking_metrics(hits, n_valid=np.array([3]), ks=(2, 4))
    assert m["recall@2"][0] == pytest.approx(1 / 3)
    assert m["recall@4"][0] == pytest.approx(2 / 3)
    assert m["precision@4"][0] == pytest.approx(2 / 4)
    # AP@4 = (P@1 + P@3) / min(3, 4) = (1 + 2/3) / 3
    assert m["map@4"][0] == pytest.approx((1 + 2 / 3) / 3)
    # NDCG@4 = (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3) + 1/log2(4))
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@4"][0] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    # At K=2 only one hit, ideal has min(3, 2) = 2 hits.
    assert m["ndcg@2"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["map@2"][0] == pytest.approx(1 / 2)


def test_train_items_are_masked_from_the_ranking() -> None:
    data = tiny_dataset()
    scores = torch.tensor([[9.0, 8.0, 1.0, 2.0, 3.0], [9.0, 1.0, 0.0, 8.0, 7.0]])
    top = top_k(
        lambda users: scores[torch.as_tensor(users)], np.array([0, 1]), data.train, 2, data.n_items
    )
    assert top.tolist() == [[4, 3], [1, 2]]


def test_out_of_catalog_valid_items_count_in_the_recall_denominator() -> None:
    data = tiny_dataset()
    scores = torch.tensor([[0.0, 0.0, 5.0, 1.0, 0.5], [0.0, 5.0, 0.0, 0.0, 0.0]])
    result = evaluate(lambda users: scores[torch.as_tensor(users)], data, ks=(1,))
    assert result.per_user["recall@1"].tolist() == [0.5, 1.0]  # user 0: 1 hit of 2 valid
    assert result.metrics["recall@1"] == pytest.approx(0.75)
    assert result.metrics["coverage@1"] == pytest.approx(2 / 5)


def test_popularity_baseline_ranks_by_train_counts() -> None:
    data = tiny_dataset()
    scorer = popularity_scorer(data)
    # counts [2, 1, 0, 1, 1]: most reviewed first, ties by index -> 0, 1, 3, 4, 2; items 0 and 1
    # are user 0's train items and are masked.
    assert top_k(scorer, np.array([0]), data.train, 3, data.n_items).tolist() == [[3, 4, 2]]
    # user 1 trained on 0, 3, 4: what is left is 1 (one review), then 2 (none)
    assert top_k(scorer, np.array([1]), data.train, 2, data.n_items).tolist() == [[1, 2]]


def test_hit_matrix_marks_only_valid_items() -> None:
    valid = Csr.from_pairs(np.array([0, 0, 1]), np.array([2, 4, 1]), 2)
    hits = hit_matrix(np.array([[4, 1], [1, 2]]), np.array([0, 1]), valid, 5)
    assert hits.tolist() == [[True, False], [True, False]]


def test_popularity_top_k_without_a_score_matrix_matches_full_scoring() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 600), rng.zipf(1.5, 600) % 90
    train = Csr.from_pairs(users, items, 40)
    data = tiny_dataset()
    data = type(data)(**{**data.__dict__, "train_users": users, "train_items": items,
                         "train": train, "video_ids": [f"v{i}" for i in range(90)],
                         "user_ids": [f"u{i}" for i in range(40)]})  # fmt: skip
    scorer = popularity_scorer(data)
    chunk = np.arange(40)
    fast = top_k(scorer, chunk, train, 10, 90)
    full = top_k(lambda c: scorer(c), chunk, train, 10, 90)  # the same scores, no `order`
    counts = data.item_counts()
    assert np.array_equal(counts[fast], counts[full])  # the same ranking up to ties
    for u in chunk:  # and never a train positive
        assert not set(fast[u]) & set(train.indices[train.indptr[u] : train.indptr[u + 1]])


def test_the_final_evaluation_scores_fewer_users_of_a_huge_catalog() -> None:
    from trainer.jobs.training import final_eval_limit
    from trainer.ml.config import TrainConfig

    cfg = TrainConfig(final_eval_users=20_000, final_eval_scores=1_000_000_000)
    assert final_eval_limit(cfg, 10_000) == 20_000  # 2e8 scores: all 20k
    assert final_eval_limit(cfg, 250_000) == 4_000  # the budget
    assert final_eval_limit(cfg, 10_000_000) == 2_000  # never under 2,000
    assert final_eval_limit(TrainConfig(final_eval_users=0), 10_000_000) == 0  # 0: everyone


def test_a_video_the_scorer_cannot_rank_is_never_a_hit_even_when_k_exceeds_the_rest() -> None:
    # User 0 trained on 0 and 1, valid 2: a scorer that cannot rank video 2 (-inf, as a champion
    # scores a video it never saw) must not get it back as filler when K exceeds what is left.
    data = tiny_dataset()
    scores = torch.tensor([[0.0, 0.0, -math.inf, 1.0, 2.0], [0.0, 0.0, -math.inf, 0.0, 0.0]])
    top = top_k(
        lambda users: scores[torch.as_tensor(users)], np.array([0]), data.train, 5, data.n_items
    )
    assert top.tolist() == [[4, 3, -1, -1, -1]]
    assert not hit_matrix(top, np.array([0]), data.valid, data.n_items).any()
    # and an empty slot of user 1 never aliases user 0's last video (key 1 * 5 - 1 = 0 * 5 + 4)
    valid = Csr.from_pairs(np.array([0]), np.array([4]), 2)
    assert not hit_matrix(np.array([[-1]]), np.array([1]), valid, data.n_items).any()


def test_random_top_k_is_uniform_over_the_videos_a_user_does_not_own() -> None:
    # The random baseline draws its top k without a users x videos matrix: it must never show a
    # train positive, must fill every slot it can (a user owning all but 3 videos gets 3), and
    # must be uniform over the rest, as the top k of uniform random scores is.
    n_items, k = 50, 5
    owners = np.repeat(np.arange(2000), 10)
    owned = np.tile(np.arange(10), 2000)  # every user owns videos 0..9
    owners = np.concatenate([owners, np.full(47, 2000)])
    owned = np.concatenate([owned, np.arange(47)])  # user 2000 owns all but 47, 48, 49
    train = Csr.from_pairs(owners, owned, 2001)
    scorer = RandomScorer(n_items, seed=3, sample_above=0)  # draws even for a small catalog
    assert RandomScorer(n_items, seed=3).sample is None  # which it would score whole
    top = top_k(scorer, np.arange(2001), train, k, n_items)
    assert np.array_equal(top, top_k(scorer, np.arange(2001), train, k, n_items))  # seeded
    assert sorted(top[2000][:3]) == [47, 48, 49] and list(top[2000][3:]) == [-1, -1]
    shown = top[:2000]
    assert (shown >= 10).all()  # never a train positive, never an empty slot
    assert all(len(set(row)) == k for row in shown)  # no video twice
    counts = np.bincount(shown.ravel(), minlength=n_items)[10:]
    expected = 2000 * k / 40
    assert ((counts - expected) ** 2 / expected).sum() < 80  # chi-square, 39 dof (p ~ 1e-4)
    first = np.bincount(shown[:, 0], minlength=n_items)[10:]  # the order is random too
    assert ((first - 50) ** 2 / 50).sum() < 80
