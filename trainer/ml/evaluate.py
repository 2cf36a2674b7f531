"""Full-ranking evaluation, shared by training, baselines and the quality gate.

For each user with at least one valid positive: score every catalog video, mask the user's train
positives, take the top K. Definitions (libraries differ, so we say exactly):
  Recall@K    = hits in top K / |user's valid positives|   (valid videos outside the catalog count
                in the denominator: the model cannot rank them, and that is a real miss)
  Precision@K = hits in top K / K
  MAP@K       = sum over hit ranks r of Precision@r / min(|valid|, K)
  NDCG@K      = sum over hit ranks r of 1/log2(r + 1) / ideal DCG with min(|valid|, K) hits
  Coverage@K  = distinct videos in anyone's top K / catalog size
Each is averaged over the evaluated users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trainer.ml.data import Csr, Dataset
from trainer.ml.scorers import SCORES_PER_CHUNK, Scorer, masked_top_k, owned

ACTIVITY_BUCKETS = ((1, 2, "1-2"), (3, 10, "3-10"), (11, None, ">10"))  # train positives
POPULARITY_BUCKETS = ("head", "torso", "tail")  # top 20% of train interactions, next 30%, rest
CI_METRICS = ("recall@10", "ndcg@10", "map@10", "precision@10")


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]  # per evaluated user, for confidence intervals and slices
    users: np.ndarray
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% bootstrap
    by_activity: dict[str, dict[str, float]] = field(default_factory=dict)
    by_popularity: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-friendly: metrics, intervals and slices (what model_runs and the gate keep)."""
        return {
            "metrics": self.metrics,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "by_activity": self.by_activity,
            "by_popularity": self.by_popularity,
        }


def eval_users(data: Dataset, limit: int = 0, seed: int = 0) -> np.ndarray:
    """Users with at least one valid positive; a seeded sample of `limit` of them when there are
    more (full ranking costs users x videos; 20k users give tight intervals)."""
    users = np.flatnonzero(data.valid_total > 0)
    if limit <= 0 or len(users) <= limit:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=limit, replace=False))


def top_k(
    scorer: Scorer, users: np.ndarray, train: Csr, k: int, n_items: int, batch: int = 1024
) -> np.ndarray:
    """Indices of the k best videos per user, the user's train positives excluded. Users are
    scored in chunks of at most `batch`, fewer for big catalogs, so memory stays bounded.
    A slot with nothing left to recommend (score -inf: a train positive, or a video the scorer
    cannot rank, such as one a champion model never saw) is -1, never a recommendation.
    Scorers that can rank without scoring every video say so (trainer/ml/scorers.py): `order`
    (one ranking for all), `sample` (random), `top_k` (a bound that skips most videos)."""
    order = getattr(scorer, "order", None)
    if order is not None:
        return _top_k_of_one_ranking(order, users, train, k)
    sample = getattr(scorer, "sample", None)
    if sample is not None:
        return sample(users, train, k)
    bounded = getattr(scorer, "top_k", None)
    batch = max(1, min(batch, SCORES_PER_CHUNK // max(n_items, 1)))
    out = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        if bounded is not None:
            out.append(bounded(chunk, train, k))
            continue
        scores = scorer(chunk)
        if scores._is_view():  # masked in place below: never write into a scorer's own table
            scores = scores.clone()
        out.append(masked_top_k(scores, *owned(chunk, train), k))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def _top_k_of_one_ranking(order: np.ndarray, users: np.ndarray, train: Csr, k: int) -> np.ndarray:
    """top_k for a scorer that ranks every user the same way (popularity): per user, the first
    k videos of `order` outside their train positives. No users x videos score matrix."""
    n_items = len(order)
    out = []
    for start in range(0, len(users), 1024):
        chunk = users[start : start + 1024]
        longest = int((train.indptr[chunk + 1] - train.indptr[chunk]).max(initial=0))
        candidates = order[: min(n_items, k + longest)]
        rows = np.repeat(chunk, train.indptr[chunk + 1] - train.indptr[chunk]).astype(np.int64)
        owned = np.sort(rows * n_items + np.concatenate(
            [train.indices[train.indptr[u] : train.indptr[u + 1]] for u in chunk] or [[]]
        ).astype(np.int64))  # fmt: skip
        member = np.isin(chunk[:, None] * n_items + candidates[None, :], owned)
        first = np.argsort(member, axis=1, kind="stable")[:, : min(k, len(candidates))]
        out.append(candidates[first])
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def hit_matrix(top: np.ndarray, users: np.ndarray, valid: Csr, n_items: int) -> np.ndarray:
    """hits[b, r] is True when the r-th recommendation of users[b] is one of its valid items
    (an empty slot, -1, never is)."""
    valid_users = np.repeat(np.arange(len(valid.indptr) - 1), valid.lengths())
    valid_keys = np.sort(valid_users * n_items + valid.indices)
    keys = users[:, None] * n_items + top
    return np.isin(keys, valid_keys) & (top >= 0)


def ranking_metrics(
    hits: np.ndarray, n_valid: np.ndarray, ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-user Recall, Precision, MAP and NDCG at each K from a hit matrix (see module doc)."""
    per_user: dict[str, np.ndarray] = {}
    ranks = np.arange(1, hits.shape[1] + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    for k in ks:
        h = hits[:, :k].astype(np.float64)
        n_hits = h.sum(axis=1)
        ideal = np.minimum(n_valid, k)
        precision_at_r = np.cumsum(h, axis=1) / ranks[:k]
        ideal_dcg = np.cumsum(discounts[:k])[np.maximum(ideal, 1) - 1]
        per_user[f"recall@{k}"] = n_hits / n_valid
        per_user[f"precision@{k}"] = n_hits / k
        per_user[f"map@{k}"] = (precision_at_r * h).sum(axis=1) / np.maximum(ideal, 1)
        per_user[f"ndcg@{k}"] = (h * discounts[:k]).sum(axis=1) / ideal_dcg
    return per_user


def evaluate(
    scorer: Scorer,
    data: Dataset,
    ks: tuple[int, ...] = (10, 20),
    users: np.ndarray | None = None,
    intervals: bool = True,
) -> EvalResult:
    """Metrics over `users` (default: all with a valid item); `intervals=False` skips the
    bootstrap and the slices (per-epoch checks need the means only)."""
    users = eval_users(data) if users is None else users
    k_max = max(ks)
    top = top_k(scorer, users, data.train, k_max, data.n_items)
    hits = hit_matrix(top, users, data.valid, data.n_items)
    per_user = ranking_metrics(hits, data.valid_total[users], ks)
    metrics = {
        name: float(values.mean()) if len(values) else 0.0 for name, values in per_user.items()
    }
    for k in ks:
        shown = top[:, :k]
        metrics[f"coverage@{k}"] = len(np.unique(shown[shown >= 0])) / data.n_items
    metrics["users"] = float(len(users))
    if not intervals:
        return EvalResult(metrics, per_user, users)
    k = 10 if 10 in ks else ks[0]
    return EvalResult(
        metrics,
        per_user,
        users,
        {name: bootstrap_ci(per_user[name]) for name in CI_METRICS if name in per_user},
        by_activity(per_user, users, data, k),
        by_popularity(top[:, :k], hits[:, :k], users, data),
    )


def bootstrap_ci(
    values: np.ndarray, draws: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap over users of the mean of a per-user metric."""
    if len(values) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            values[rng.integers(0, len(values), size=(min(100, draws - i), len(values)))].mean(1)
            for i in range(0, draws, 100)
        ]
    )
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_difference_ci(
    a: np.ndarray, b: np.ndarray, draws: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over the same users, with its 95% paired bootstrap interval."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = bootstrap_ci(diff, draws, seed)
    return float(diff.mean()) if len(diff) else 0.0, low, high


def by_activity(
    per_user: dict[str, np.ndarray], users: np.ndarray, data: Dataset, k: int
) -> dict[str, dict[str, float]]:
    """Recall and NDCG at k for users with 1-2, 3-10 and more than 10 train positives."""
    train_counts = data.train.lengths()[users]
    out = {}
    for low, high, name in ACTIVITY_BUCKETS:
        mask = (train_counts >= low) & (train_counts <= (high or np.inf))
        out[name] = {
            "users": int(mask.sum()),
            f"recall@{k}": float(per_user[f"recall@{k}"][mask].mean()) if mask.any() else 0.0,
            f"ndcg@{k}": float(per_user[f"ndcg@{k}"][mask].mean()) if mask.any() else 0.0,
        }
    return out


def popularity_bucket_of_items(data: Dataset) -> np.ndarray:
    """0 head, 1 torso, 2 tail: videos sorted by train count, cut at 20% and 50% of interactions."""
    counts = data.item_counts()
    order = np.argsort(-counts, kind="stable")
    share = np.cumsum(counts[order]) / max(counts.sum(), 1)
    bucket = np.empty(len(counts), dtype=np.int64)
    bucket[order] = np.where(share <= 0.2, 0, np.where(share <= 0.5, 1, 2))
    return bucket


def by_popularity(
    top: np.ndarray, hits: np.ndarray, users: np.ndarray, data: Dataset
) -> dict[str, dict[str, float]]:
    """Per popularity bucket: recall over the valid items in it (hits / valid items, pooled over
    the evaluated users) and the share of recommendations that fall in it."""
    bucket = popularity_bucket_of_items(data)
    valid_rows = np.isin(np.repeat(np.arange(data.n_users), data.valid.lengths()), users)
    valid_buckets = bucket[data.valid.indices[valid_rows]]
    hit_buckets = bucket[top[hits]]
    shown = top[top >= 0]
    out = {}
    for index, name in enumerate(POPULARITY_BUCKETS):
        relevant = int((valid_buckets == index).sum())
        out[name] = {
            "valid_items": relevant,
            "recall": float((hit_buckets == index).sum() / relevant) if relevant else 0.0,
            "share_of_recommendations": float((bucket[shown] == index).mean())
            if shown.size
            else 0.0,
        }
    return out
