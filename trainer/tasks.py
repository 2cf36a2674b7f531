"""Loss tasks, kept apart from the model so objectives can be compared on the same towers.

softmax: in-batch sampled softmax. The other positives of the batch are the negatives; since
popular videos appear as in-batch negatives more often than uniformly, each logit is corrected by
subtracting log q(item), the item's sampling probability (Yi et al. 2019). Rows whose item equals
this row's item are masked, so a duplicate is never a negative of itself.

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
) -> torch.Tensor:
    """Sampled softmax over the batch's items plus optional uniformly drawn videos (mixed
    negative sampling, Yang et al. 2020): in-batch negatives follow popularity and never reach
    the tail, so without uniform ones rarely-seen videos keep random vectors that crowd top-K."""
    all_items = model.item_vectors()
    user_vec = model.user_vectors(users, leave_out=items, all_items=all_items)
    logits = user_vec @ all_items[items].T / temperature
    if log_q is not None:
        logits = logits - log_q[items].unsqueeze(0)
    same_item = items.unsqueeze(0) == items.unsqueeze(1)
    eye = torch.eye(len(items), dtype=torch.bool, device=items.device)
    logits = logits.masked_fill(same_item & ~eye, float("-inf"))
    if uniform is not None and len(uniform):
        extra = user_vec @ all_items[uniform].T / temperature
        if log_q is not None:  # each uniform draw has probability len(uniform) / n_items
            extra = extra - math.log(len(uniform) / all_items.shape[0])
        extra = extra.masked_fill(uniform.unsqueeze(0) == items.unsqueeze(1), float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    loss = F.cross_entropy(logits, torch.arange(len(items), device=items.device), reduction="none")
    return _weighted_mean(loss, weights)


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
    all_items = model.item_vectors()
    # Positives are in the user's history: leave them out; negatives never are.
    leave_out = torch.where(labels > 0, items, torch.full_like(items, -1))
    user_vec = _user_vectors_partial_leave_out(model, users, leave_out, all_items)
    cosine = (user_vec * all_items[items]).sum(-1)
    loss = F.binary_cross_entropy_with_logits(head(cosine), labels, reduction="none")
    return _weighted_mean(loss, weights)


def _user_vectors_partial_leave_out(
    model: TwoTower, users: torch.Tensor, leave_out: torch.Tensor, all_items: torch.Tensor
) -> torch.Tensor:
    has = leave_out >= 0
    out = torch.empty(len(users), all_items.shape[1], dtype=all_items.dtype)
    if has.any():
        out[has] = model.user_vectors(users[has], leave_out=leave_out[has], all_items=all_items)
    if (~has).any():
        out[~has] = model.user_vectors(users[~has], all_items=all_items)
    return out


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum()
