"""trainer/ml/optim.py's Adam makes torch's updates: torch.optim.Adam's on dense parameters,
torch.optim.SparseAdam's on sparse-gradient tables (untouched rows and their moments stay)."""

from __future__ import annotations

import torch
from torch import nn

from trainer.ml.optim import Adam


def _batches(table: nn.Embedding, steps: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        rows = torch.randint(0, table.num_embeddings // 2, (12,), generator=generator)  # repeats
        batches.append((rows, torch.randn(12, table.embedding_dim, generator=generator)))
    return batches


def _train(table: nn.Embedding, optimizer, batches) -> None:  # noqa: ANN001
    for rows, target in batches:
        optimizer.zero_grad()
        ((table(rows) - target) ** 2).sum().backward()
        optimizer.step()


def _pair(sparse: bool) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(0)
    ours = nn.Embedding(40, 6, sparse=sparse)
    theirs = nn.Embedding(40, 6, sparse=sparse)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def test_sparse_tables_move_as_sparse_adam_moves_them() -> None:
    ours, theirs = _pair(sparse=True)
    before = ours.weight.detach().clone()
    batches = _batches(ours, steps=25, seed=1)
    _train(ours, Adam(ours.parameters(), lr=0.05), batches)
    _train(theirs, torch.optim.SparseAdam(theirs.parameters(), lr=0.05), batches)
    assert torch.allclose(ours.weight, theirs.weight, atol=1e-5)
    assert not torch.equal(ours.weight[:20], before[:20])  # touched rows moved
    assert torch.equal(ours.weight[20:], before[20:])  # rows no step touched did not


def test_dense_parameters_move_as_adam_moves_them() -> None:
    ours, theirs = _pair(sparse=False)
    batches = _batches(ours, steps=25, seed=2)
    _train(ours, Adam(ours.parameters(), lr=0.05), batches)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=0.05), batches)
    assert torch.allclose(ours.weight, theirs.weight, atol=1e-5)
