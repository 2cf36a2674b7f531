"""Loss tasks, kept apart from the model so objectives can be compared on the same towers.

softmax: sampled softmax over the batch's items plus a shared set of uniformly drawn videos
(mixed negative sampling, Yang et al. 2020). In-batch negatives follow popularity, so each logit
is corrected by subtracting log q(item), its sampling probability (Yi et al. 2019); uniform ones
reach the tail, which in-batch negatives never do, so rarely-seen videos do not keep random
vectors that crowd the top K. A row's own item elsewhere in the batch is masked, never a negative.

bce: the brief's pointwise objective: label 1 for train positives, 0 for the SQL negative samples,
on a learned affine map of the cosine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.model import TwoTower


def softmax_loss(
    model: TwoTower,
    users: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor | None,
    log_q: torch.Tensor | None,
    temperature: float,
    uniform: torch.Tensor | None = None,
    id_dropout: float = 0.0,
) -> torch.Tensor:
    user_vec = model.user_vectors(users, leave_out=items, id_dropout=id_dropout)
    logits = user_vec @ model.item_vectors(items).T / temperature
    if log_q is not None:
        logits = logits - log_q[items].unsqueeze(0)
    same_item = items.unsqueeze(0) == items.unsqueeze(1)
    eye = torch.eye(len(items), dtype=torch.bool, device=items.device)
    logits = logits.masked_fill(same_item & ~eye, float("-inf"))
    if uniform is not None and len(uniform):
        extra = user_vec @ model.item_vectors(uniform).T / temperature
        if log_q is not None:  # each uniform draw has probability len(uniform) / n_items
            extra = extra - math.log(len(uniform) / model.n_items)
        extra = extra.masked_fill(uniform.unsqueeze(0) == items.unsqueeze(1), float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    target = torch.arange(len(items), device=items.device)
    return _weighted_mean(F.cross_entropy(logits, target, reduction="none"), weights)


class PointwiseHead(nn.Module):
    """logit = scale * cosine + bias: a cosine in [-1, 1] alone cannot reach confident labels."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, cosine: torch.Tensor) -> torch.Tensor:
        return self.scale * cosine + self.bias


def bce_loss(
    model: TwoTower,
    head: PointwiseHead,
    users: torch.Tensor,
    items: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    # Positives are in the user's history and are left out of it; negatives never are.
    leave_out = torch.where(labels > 0, items, torch.full_like(items, -1))
    user_vec = model.user_vectors(users, leave_out=leave_out)
    cosine = (user_vec * model.item_vectors(items)).sum(-1)
    loss = F.binary_cross_entropy_with_logits(head(cosine), labels, reduction="none")
    return _weighted_mean(loss, weights)


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum()
