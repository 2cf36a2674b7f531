"""Loss tasks, kept apart from the model so objectives can be compared on the same towers.

softmax (the default): each target video's loss is -log of its share of exp(score /
temperature) among itself and the negatives (score = bias + cosine, trainer/ml/model.py); the
user's other train videos (pooled or target) are positives, so they are never among the
negatives.
  - full (no q given): every catalog video is a negative; for catalogs that fit a step.
  - sampled: for bigger catalogs, `negatives` draws from q (popularity-smoothed, see
    sampling_distribution), once per batch and shared by its users. Each drawn video's logit is
    corrected by the log of its probability of being drawn (log-Q correction, Yi et al. 2019),
    so the sum estimates the full denominator. A step then costs the same for any catalog.

bce: the brief's pointwise objective: label 1 for the targets, 0 for the users' SQL negative
samples, on a learned affine map of the score.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.ml.batches import UserBatch
from trainer.ml.model import TwoTower


def _user_vectors(
    model: TwoTower, batch: UserBatch, input_vectors: torch.Tensor, id_dropout: float
) -> torch.Tensor:
    """The batch's user tower from its pooled videos' (looked-up) vectors; with id_dropout,
    some users' ID embeddings are dropped (model.py: user_vectors)."""
    keep = None
    if id_dropout > 0 and model.use_history and model.user_embedding.num_embeddings:
        keep = (torch.rand(len(batch.users), device=batch.users.device) >= id_dropout).float()
    return model.pool(batch.users, batch.input_rows, input_vectors, keep)


def sampling_distribution(item_counts: np.ndarray, power: float) -> torch.Tensor:
    """q(video) for the sampled softmax: (train count + 1) ** power, normalised. Popular videos
    are the negatives that crowd a top 10, so they are drawn more often; +1 keeps every video
    reachable; the log-Q correction removes the bias this sampling adds."""
    weights = (item_counts.astype(np.float64) + 1.0) ** power
    return torch.as_tensor(weights / weights.sum(), dtype=torch.float32)


def softmax_loss(
    model: TwoTower,
    batch: UserBatch,
    temperature: float,
    negatives: int,
    generator: torch.Generator,
    q: torch.Tensor | None = None,
    logq_correction: bool = True,
    id_dropout: float = 0.0,
) -> torch.Tensor:
    rows, targets = batch.target_rows, batch.target_items
    # Every train video of the user (pooled or target) is a positive, never a negative.
    own_rows = torch.cat([batch.input_rows, rows])
    own_items = torch.cat([batch.input_items, targets])
    if q is None:
        user_vec = _user_vectors(model, batch, model.item_vectors(batch.input_items), id_dropout)
        logits = user_vec @ model.scoring_vectors().T / temperature
        positive = logits[rows, targets]
        logits = logits.index_put((own_rows, own_items), logits.new_tensor(-torch.inf))
        denominator = torch.logsumexp(logits, dim=1)[rows]
    else:
        drawn = torch.multinomial(q, negatives, replacement=True, generator=generator).unique()
        drawn = drawn.to(rows.device)
        # Each video the step touches is looked up once: one sparse gradient row per video.
        touched, where = torch.unique(
            torch.cat([batch.input_items, targets, drawn]), return_inverse=True
        )
        vectors = model.scoring_vectors(touched)  # [bias, unit vector] per touched video
        at_input, at_target, at_drawn = where.split(
            [len(batch.input_items), len(targets), len(drawn)]
        )
        user_vec = _user_vectors(model, batch, vectors.index_select(0, at_input)[:, 1:], id_dropout)
        sampled = user_vec @ vectors.index_select(0, at_drawn).T / temperature
        if logq_correction:  # log P(video is among the unique draws)
            q_drawn = q.to(user_vec.device)[drawn]
            sampled = sampled - torch.log(-torch.expm1(negatives * torch.log1p(-q_drawn)))
        slot = torch.full((model.n_items,), -1, dtype=torch.long, device=drawn.device)
        slot[drawn] = torch.arange(len(drawn), device=drawn.device)
        hit = slot[own_items] >= 0
        sampled = sampled.index_put(
            (own_rows[hit], slot[own_items[hit]]), sampled.new_tensor(-torch.inf)
        )
        positive = (user_vec.index_select(0, rows) * vectors.index_select(0, at_target)).sum(-1)
        positive = positive / temperature
        denominator = torch.logsumexp(sampled, dim=1)[rows]
    per_target = torch.logaddexp(denominator, positive) - positive
    return _weighted_mean(per_target, batch.target_weights)


class PointwiseHead(nn.Module):
    """logit = scale * score + offset: a score near [-1, 1] alone cannot reach confident labels."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        return self.scale * score + self.bias


def bce_loss(
    model: TwoTower, head: PointwiseHead, batch: UserBatch, id_dropout: float = 0.0
) -> torch.Tensor:
    user_vec = _user_vectors(model, batch, model.item_vectors(batch.input_items), id_dropout)
    assert batch.negatives is not None and batch.negative_rows is not None
    rows = torch.cat([batch.target_rows, batch.negative_rows])
    items = torch.cat([batch.target_items, batch.negatives])
    ones = torch.ones(len(batch.negatives), device=rows.device)
    labels = torch.cat([torch.ones_like(batch.target_weights), torch.zeros_like(ones)])
    weights = torch.cat([batch.target_weights, ones])
    score = (user_vec[rows] * model.scoring_vectors(items)).sum(-1)
    loss = F.binary_cross_entropy_with_logits(head(score), labels, reduction="none")
    return _weighted_mean(loss, weights)


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    return (loss * weights).sum() / total if float(total) > 0 else loss.sum() * 0.0
