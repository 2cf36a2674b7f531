"""The two-tower model: an item tower and a user tower that share one embedding space.

Item tower: a video's ID embedding, L2-normalised. User tower: the user's ID embedding plus the
mean of the item-tower vectors of the user's train history, L2-normalised. The history term is
what gives thin users (one or two reviews) a useful vector, and because it is a plain mean of
published video vectors, a new app user's vector from their likes is reproducible in SQL
(the normalised avg(embedding)). Scores are cosine similarities: what pgvector's
vector_cosine_ops and DuckDB's array_cosine_distance compute.

Embeddings are sparse: a training step touches only the rows of its batch (users, items, sampled
negatives and the batch users' histories), so a step costs the same for 10k or 1M videos.
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
        self.user_embedding = nn.Embedding(n_users, dim, sparse=True)
        self.item_embedding = nn.Embedding(n_items, dim, sparse=True)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        indptr = torch.as_tensor(history.indptr if history else np.zeros(n_users + 1, np.int64))
        indices = torch.as_tensor(history.indices if history else np.zeros(0, np.int64))
        self.register_buffer("history_indptr", indptr, persistent=False)
        self.register_buffer("history_indices", indices, persistent=False)
        self.use_history = history is not None

    @property
    def n_users(self) -> int:
        return self.user_embedding.num_embeddings

    @property
    def n_items(self) -> int:
        return self.item_embedding.num_embeddings

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item_embedding(items), dim=-1)

    def user_vectors(
        self, users: torch.Tensor, leave_out: torch.Tensor | None = None, id_dropout: float = 0.0
    ) -> torch.Tensor:
        """User vectors. `leave_out[b]` (an item id, or -1 for none) is removed from row b's
        history: in training the target is in the user's own history, and the model must not
        learn to find it there. `id_dropout` zeroes the ID embedding of that share of rows
        (training only), so the history path alone also ranks well: that is all a new app user
        known by likes has (DropoutNet, Volkovs et al. 2017)."""
        vectors = self.user_embedding(users)
        if id_dropout > 0 and self.use_history:
            keep = torch.rand(len(users), device=users.device) >= id_dropout
            vectors = vectors * keep.unsqueeze(1).to(vectors.dtype)
        if self.use_history:
            vectors = vectors + self._history_mean(users, leave_out)
        return F.normalize(vectors, dim=-1)

    def _history_mean(self, users: torch.Tensor, leave_out: torch.Tensor | None) -> torch.Tensor:
        starts = self.history_indptr[users]
        lengths = self.history_indptr[users + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        position = torch.arange(int(lengths.sum()), device=users.device)
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        items = self.history_indices[starts[rows] + position - offsets[rows]]
        if leave_out is not None:
            keep = items != leave_out[rows]
            rows, items = rows[keep], items[keep]
        dim = self.item_embedding.embedding_dim
        total = torch.zeros(len(users), dim, device=users.device).index_add(
            0, rows, self.item_vectors(items)
        )
        count = torch.bincount(rows, minlength=len(users)).clamp(min=1)
        return total / count.unsqueeze(1).to(total.dtype)

    @torch.no_grad()
    def export(self, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors, item vectors) for every user and video, as float32 numpy arrays."""
        device = self.user_embedding.weight.device

        def chunks(n: int, fn) -> np.ndarray:
            parts = [
                fn(torch.arange(s, min(s + batch, n), device=device)) for s in range(0, n, batch)
            ]
            return torch.cat(parts).cpu().numpy().astype(np.float32)

        return chunks(self.n_users, self.user_vectors), chunks(self.n_items, self.item_vectors)


def embed_history(item_vectors: np.ndarray, items: list[int]) -> np.ndarray:
    """A vector for a user the model has never seen, from the videos they liked (no retraining):
    the user tower with a zero ID embedding, i.e. the normalised mean of the videos' vectors."""
    if not items:
        raise ValueError("a new user needs at least one known video")
    mean = item_vectors[np.asarray(items)].mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
