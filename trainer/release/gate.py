"""The quality gate: champion (the current `latest`) against challenger, on the same new split.

The challenger must
  1. beat popularity: the paired bootstrap interval of (challenger - popularity) in the gate
     metric over the same users lies above zero; and
  2. not regress against the champion beyond a tolerance: it fails when the challenger's mean is
     lower than the champion's by more than `tolerance` (relative) *and* the paired interval of
     (challenger - champion) lies wholly below zero, i.e. the drop is not noise.
The champion is re-scored on the new validation split, so both are judged on the same users and
the same masked train items: users and videos it never saw are handled as it would serve them
(unknown users from their train history through its video vectors; unknown videos not ranked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from trainer.ml.data import Dataset
from trainer.ml.evaluate import EvalResult, paired_difference_ci
from trainer.ml.model import fold_in
from trainer.ml.scorers import Scorer
from trainer.release.artifact import ModelArtifact


@dataclass(frozen=True)
class GateConfig:
    metric: str = "recall@10"  # the brief's gate metric
    tolerance: float = 0.05  # relative drop against the champion that is tolerated


@dataclass
class Verdict:
    passed: bool
    reason: str
    checks: dict = field(default_factory=dict)


def champion_scorer(champion: ModelArtifact, data: Dataset) -> Scorer:
    """Score the new split's users and videos with the champion's published vectors."""
    dim = champion.item_vectors.shape[1]
    video_row = {v: i for i, v in enumerate(champion.video_ids)}
    rows = np.array([video_row.get(v, -1) for v in data.video_ids])
    known = rows >= 0
    items = np.zeros((data.n_items, dim), np.float32)
    items[known] = champion.item_vectors[rows[known]]
    user_row = {u: i for i, u in enumerate(champion.user_ids)}
    users = np.zeros((data.n_users, dim), np.float32)
    for u, user_id in enumerate(data.user_ids):
        if user_id in user_row:
            users[u] = champion.user_vectors[user_row[user_id]]
            continue
        history = data.train.indices[data.train.indptr[u] : data.train.indptr[u + 1]]
        history = history[known[history]]
        if len(history):
            users[u] = fold_in(items, history, champion.layout)
    item_t, user_t = torch.as_tensor(items), torch.as_tensor(users)
    unknown = torch.as_tensor(~known)

    def score(chunk: np.ndarray) -> torch.Tensor:
        scores = user_t[torch.as_tensor(chunk)] @ item_t.T
        return scores.masked_fill(unknown.unsqueeze(0), float("-inf"))

    return score


def judge(
    challenger: EvalResult,
    popularity: EvalResult,
    champion: EvalResult | None,
    cfg: GateConfig,
) -> Verdict:
    m = cfg.metric
    mean, low, high = paired_difference_ci(challenger.per_user[m], popularity.per_user[m])
    checks: dict = {
        "metric": m,
        "challenger": challenger.metrics[m],
        "popularity": popularity.metrics[m],
        "vs_popularity": {"mean": mean, "ci95": [low, high]},
    }
    if low <= 0:
        return Verdict(
            False,
            f"challenger does not beat popularity on {m}: difference {mean:+.4f}, "
            f"95% CI [{low:+.4f}, {high:+.4f}] includes or is below zero",
            checks,
        )
    if champion is None:
        return Verdict(True, f"first model: beats popularity on {m} by {mean:+.4f}", checks)
    c_mean, c_low, c_high = paired_difference_ci(challenger.per_user[m], champion.per_user[m])
    champ = champion.metrics[m]
    checks.update(champion=champ, vs_champion={"mean": c_mean, "ci95": [c_low, c_high]})
    drop = -c_mean / champ if champ > 0 else 0.0
    if drop > cfg.tolerance and c_high < 0:
        return Verdict(
            False,
            f"challenger regresses against the champion on {m}: {challenger.metrics[m]:.4f} vs "
            f"{champ:.4f} ({-drop:+.1%}, tolerance {cfg.tolerance:.0%}), 95% CI of the difference "
            f"[{c_low:+.4f}, {c_high:+.4f}] is below zero",
            checks,
        )
    return Verdict(
        True,
        f"beats popularity ({mean:+.4f}) and holds against the champion "
        f"({c_mean:+.4f}, 95% CI [{c_low:+.4f}, {c_high:+.4f}])",
        checks,
    )
