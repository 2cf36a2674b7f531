"""The two-tower model: an item tower and a user tower that share one embedding space.

Item tower: a video's ID embedding, L2-normalised. User tower: the mean of the item-tower vectors
of (part of) the user's train history, L2-normalised, optionally plus a learned per-user ID
embedding (`user_ids`). History-only is the default: it learns item-to-item signal (a low-rank,
symmetric cousin of EASE, trained by the softmax), thin users (one or two reviews) get the same
path as heavy ones, and a new app user's vector from their likes is exactly what a reviewer with
those likes gets — reproducible in SQL as the normalised avg(embedding) of the liked videos.
Scores are cosine similarities: what pgvector's vector_cosine_ops and DuckDB's
array_cosine_distance compute.

The history is an argument, not a buffer: training pools a random part of each user's history
and predicts the rest (trainer/batches.py); export pools all of it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.data import Csr


class TwoTower(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        history: bool = True,
        user_ids: bool = False,
        sparse_items: bool = False,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if not (history or user_ids):
            raise ValueError("the user tower needs the history, a user ID embedding, or both")
        # Users are sparse (a step touches its batch's rows only); items are dense when every
        # step scores the whole catalog anyway (full softmax), sparse when it samples.
        self.user_embedding = nn.Embedding(n_users if user_ids else 0, dim, sparse=True)
        self.item_embedding = nn.Embedding(n_items, dim, sparse=sparse_items)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        self.use_history = history
        self.n_users = n_users

    @property
    def n_items(self) -> int:
        return self.item_embedding.num_embeddings

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.item_embedding.weight if items is None else self.item_embedding(items)
        return F.normalize(weight, dim=-1)

    def user_vectors(
        self,
        users: torch.Tensor,
        pool_rows: torch.Tensor,
        pool_items: torch.Tensor,
        id_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Vectors of `users`; row b pools the items `pool_items[pool_rows == b]`. `id_keep`
        (0/1 per row) drops the ID embedding of some rows in training, so the history path
        alone also ranks well: that is all a new app user known by likes has (DropoutNet)."""
        dim = self.item_embedding.embedding_dim
        if self.user_embedding.num_embeddings:
            vectors = self.user_embedding(users)
            if id_keep is not None:
                vectors = vectors * id_keep.unsqueeze(1)
        else:
            vectors = torch.zeros(len(users), dim, device=users.device)
        if self.use_history and len(pool_items):
            total = torch.zeros_like(vectors).index_add(0, pool_rows, self.item_vectors(pool_items))
            count = torch.bincount(pool_rows, minlength=len(users)).clamp(min=1)
            vectors = vectors + total / count.unsqueeze(1).to(total.dtype)
        return F.normalize(vectors, dim=-1)

    @torch.no_grad()
    def export(self, history: Csr, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors over their whole train history, item vectors), float32 numpy."""
        device = self.item_embedding.weight.device
        parts = []
        for start in range(0, self.n_users, batch):
            stop = min(start + batch, self.n_users)
            lo, hi = int(history.indptr[start]), int(history.indptr[stop])
            rows = np.repeat(np.arange(stop - start), np.diff(history.indptr[start : stop + 1]))
            parts.append(
                self.user_vectors(
                    torch.arange(start, stop, device=device),
                    torch.as_tensor(rows, device=device),
                    torch.as_tensor(history.indices[lo:hi], device=device),
                )
            )
        users = torch.cat(parts) if parts else torch.zeros(0, self.item_embedding.embedding_dim)
        return users.cpu().numpy().astype(np.float32), self.item_vectors().cpu().numpy()


def embed_history(item_vectors: np.ndarray, items: list[int]) -> np.ndarray:
    """A vector for a user the model has never seen, from the videos they liked (no retraining):
    the user tower with a zero ID embedding, i.e. the normalised mean of the videos' vectors."""
    if not items:
        raise ValueError("a new user needs at least one known video")
    mean = item_vectors[np.asarray(items)].mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
