"""The two-tower model: an item tower and a user tower that share one embedding space.

Item tower: a video's ID embedding, L2-normalised, and a learned bias (how much the video is
watched at all, the signal that carries a long tail). User tower: the normalised mean of the
item-tower vectors of (part of) the user's train history, optionally plus a learned per-user ID
embedding (`user_ids`). History-only is the default: it learns item-to-item signal (a low-rank,
symmetric cousin of EASE, trained by the softmax), thin users get the same path as heavy ones, and
a new app user's vector from their likes is exactly what a reviewer with those likes gets.

A score is bias(video) + cosine(user, video). Published vectors turn it into one cosine, so
pgvector's vector_cosine_ops and DuckDB's array_cosine_distance rank exactly as the model does
(the norm-completing trick of Bachrach et al. 2014):
    video  [sqrt(R^2 - bias^2 - 1), bias, v]     every video has norm R = max sqrt(bias^2 + 1)
    user   [0, 1, u]                             (u, v unit vectors)
so video . user = bias + u . v, and dividing by the equal norms keeps the order. A user built from
likes in SQL is [0, 1, normalise(mean of the liked videos' coordinates 3..)]: `fold_in` here,
user_vector_from_likes in sql/duckdb, the same rule in the Postgres functions.

The history is an argument, not a buffer: training pools a random part of each user's history
and predicts the rest (trainer/ml/batches.py); export pools all of it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.ml.data import Csr

# Published coordinates beyond the learned ones: the norm completion and the bias (module doc).
LAYOUT_EXTRA = 2
# The layout's name, recorded in each artifact; "cosine" is what artifacts written before the bias
# hold (plain normalised vectors), still read so a gate can score an older champion.
LAYOUT = "completed-bias/1"
LEGACY_LAYOUT = "cosine"


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
        item_bias: bool = True,
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
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse_items)
        nn.init.zeros_(self.item_bias.weight)
        self.item_bias.weight.requires_grad_(item_bias)  # off: plain cosine (bias stays 0)
        self.use_history = history
        self.n_users = n_users

    @property
    def n_items(self) -> int:
        return self.item_embedding.num_embeddings

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.item_embedding.weight if items is None else self.item_embedding(items)
        return F.normalize(weight, dim=-1)

    def scoring_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[bias, v] per video: its dot product with user_vectors' [1, u] is the score."""
        bias = self.item_bias.weight if items is None else self.item_bias(items)
        return torch.cat([bias, self.item_vectors(items)], dim=-1)

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
        return self.pool(users, pool_rows, self.item_vectors(pool_items), id_keep)

    def pool(
        self,
        users: torch.Tensor,
        pool_rows: torch.Tensor,
        pool_vectors: torch.Tensor,
        id_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """user_vectors from the pooled items' (unit) vectors, already looked up: a sampled
        training step looks every video it touches up once (trainer/ml/tasks.py)."""
        dim = self.item_embedding.embedding_dim
        if self.user_embedding.num_embeddings:
            vectors = self.user_embedding(users)
            if id_keep is not None:
                vectors = vectors * id_keep.unsqueeze(1)
        else:
            vectors = torch.zeros(len(users), dim, device=users.device)
        if self.use_history and len(pool_vectors):
            total = torch.zeros_like(vectors).index_add(0, pool_rows, pool_vectors)
            count = torch.bincount(pool_rows, minlength=len(users)).clamp(min=1)
            vectors = vectors + total / count.unsqueeze(1).to(total.dtype)
        vectors = F.normalize(vectors, dim=-1)
        return torch.cat([torch.ones_like(vectors[:, :1]), vectors], dim=-1)

    @torch.no_grad()
    def history_vectors(self, history: Csr, users: np.ndarray, batch: int = 8192) -> torch.Tensor:
        """[1, u] for each of `users` over their whole train history, in that order: what
        export publishes for them, and what a selection epoch scores its sampled users with
        (their dot product with scoring_vectors() ranks as the published cosine does)."""
        device = self.item_embedding.weight.device
        users = np.asarray(users)
        out = torch.zeros(len(users), self.item_embedding.embedding_dim + 1)
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            rows, positions = history.rows_of(chunk)
            out[start : start + len(chunk)] = self.user_vectors(
                torch.as_tensor(chunk, device=device),
                torch.as_tensor(rows, device=device),
                torch.as_tensor(history.indices[positions], device=device),
            ).cpu()
        return out

    @torch.no_grad()
    def export(self, history: Csr, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors over their whole train history, video vectors), float32 numpy, in the
        published layout of the module doc."""
        users = self.history_vectors(history, np.arange(self.n_users), batch)
        return publish_layout(users.numpy(), self.scoring_vectors().cpu().numpy())


def publish_layout(users: np.ndarray, scoring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([1, u] users, [bias, v] videos) -> the published [0, 1, u] and [completion, bias, v]."""
    squared = (scoring.astype(np.float64) ** 2).sum(axis=1)
    radius = float(np.sqrt(squared.max())) if len(squared) else 1.0
    completion = np.sqrt(np.maximum(radius**2 - squared, 0.0))
    videos = np.concatenate([completion[:, None], scoring], axis=1).astype(np.float32)
    users = np.concatenate([np.zeros((len(users), 1)), users], axis=1).astype(np.float32)
    return users, videos


def fold_in(
    video_vectors: np.ndarray, items: list[int] | np.ndarray, layout: str = LAYOUT
) -> np.ndarray:
    """A vector for a user the model has never seen, from the videos they liked (no retraining):
    the user tower with a zero ID embedding, from published video vectors: [0, 1, normalised
    mean of their coordinates 3..] (the legacy layout: the normalised mean)."""
    if len(items) == 0:
        raise ValueError("a new user needs at least one known video")
    skip = 0 if layout == LEGACY_LAYOUT else LAYOUT_EXTRA
    mean = video_vectors[np.asarray(items), skip:].mean(axis=0)
    unit = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return np.concatenate([[0.0, 1.0][:skip], unit]).astype(np.float32)
