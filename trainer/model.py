"""The two-tower model: an item tower and a user tower that share one embedding space.

Item tower: a video's ID embedding, L2-normalised. User tower: the user's ID embedding plus the
mean of the item-tower vectors of the user's train history, L2-normalised. The history term is
what gives thin users (one or two reviews) a useful vector, and because it is a plain mean of
published video vectors, a new app user's vector from their likes is reproducible in SQL
(normalise(avg(embedding))). Scores are cosine similarities: what pgvector's
vector_cosine_ops and DuckDB's array_cosine_distance compute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.data import Csr


class TwoTower(nn.Module):
    def __init__(
        self, n_users: int, n_items: int, dim: int, history: Csr | None, init_std: float = 0.1
    ) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        indptr = torch.as_tensor(history.indptr if history else np.zeros(n_users + 1, np.int64))
        indices = torch.as_tensor(history.indices if history else np.zeros(0, np.int64))
        self.register_buffer("history_indptr", indptr, persistent=False)
        self.register_buffer("history_indices", indices, persistent=False)
        self.use_history = history is not None

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.item_embedding.weight if items is None else self.item_embedding(items)
        return F.normalize(weight, dim=-1)

    def user_vectors(
        self,
        users: torch.Tensor,
        leave_out: torch.Tensor | None = None,
        all_items: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """User vectors; `leave_out` removes each row's target item from its history (training),
        so the model cannot score a positive by finding it in the user's own history."""
        vectors = self.user_embedding(users)
        if self.use_history:
            items = self.item_vectors() if all_items is None else all_items
            vectors = vectors + self._history_mean(users, items, leave_out)
        return F.normalize(vectors, dim=-1)

    def _history_mean(
        self, users: torch.Tensor, items: torch.Tensor, leave_out: torch.Tensor | None
    ) -> torch.Tensor:
        starts = self.history_indptr[users]
        lengths = self.history_indptr[users + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        position = torch.arange(int(lengths.sum()), device=users.device)
        flat = torch.repeat_interleave(starts - offsets, lengths) + position
        total = F.embedding_bag(self.history_indices[flat], items, offsets, mode="sum")
        count = lengths.to(items.dtype)
        if leave_out is not None:
            total = total - items[leave_out]
            count = count - 1
        return total / count.clamp(min=1).unsqueeze(1)

    @torch.no_grad()
    def export(self, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors, item vectors) for every user and video, as float32 numpy arrays."""
        items = self.item_vectors()
        users = torch.cat(
            [
                self.user_vectors(torch.arange(s, min(s + batch, self.n_users)), all_items=items)
                for s in range(0, self.n_users, batch)
            ]
        )
        return users.numpy().astype(np.float32), items.numpy().astype(np.float32)

    @property
    def n_users(self) -> int:
        return self.user_embedding.num_embeddings


def embed_history(item_vectors: np.ndarray, items: list[int]) -> np.ndarray:
    """A vector for a user the model has never seen, from the videos they liked (no retraining):
    the user tower with a zero ID embedding, i.e. the normalised mean of the videos' vectors."""
    if not items:
        raise ValueError("a new user needs at least one known video")
    mean = item_vectors[np.asarray(items)].mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
