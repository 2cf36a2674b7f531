"""Adam for the towers: dense parameters as torch.optim.Adam updates them, sparse-gradient
tables (nn.Embedding(sparse=True)) as torch.optim.SparseAdam does (lazy Adam: only the rows a
step touched move, and only their moments decay), in one small class.

Why not torch.optim: two costs measured on the train command (README, "Benchmarks").
  - The first torch.optim optimizer a process builds imports torch._dynamo (about 1.7 s on a
    2-core VM): a third of a small dataset's whole `python -m trainer train`.
  - SparseAdam builds several sparse tensors per table per step (the moments masked by the
    gradient's pattern); on a big sampled-softmax catalog that bookkeeping, not the arithmetic,
    was a third of an epoch. Here the touched rows are gathered once (index_select, several
    times faster than [rows] on CPU), updated as dense blocks, and written back.
The update is Adam's, m̂ / (sqrt(v̂) + eps); tests/unit/test_optim.py checks it against both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        bias1, bias2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        step_size = self.lr / bias1
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            if not p.grad.is_sparse:
                exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denominator = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(self.eps)
                p.addcdiv_(exp_avg, denominator, value=-step_size)
                continue
            grad = p.grad.coalesce()
            rows, values = grad.indices()[0], grad.values()
            m = exp_avg.index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
            v = exp_avg_sq.index_select(0, rows).mul_(beta2)
            v.addcmul_(values, values, value=1 - beta2)
            exp_avg.index_copy_(0, rows, m)
            exp_avg_sq.index_copy_(0, rows, v)
            update = m.div_(v.sqrt_().div_(math.sqrt(bias2)).add_(self.eps))
            p.index_copy_(0, rows, p.index_select(0, rows).sub_(update, alpha=step_size))
