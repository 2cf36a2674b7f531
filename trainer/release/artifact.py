"""One loadable model file: safetensors (no pickle can run on load) with JSON metadata.

Tensors: user and item ID embeddings, the users' train histories (CSR) and the exported vectors
in their published layout. Metadata: format, version, layout (trainer/ml/model.py), config, id maps,
metrics, data fingerprint.
Files are versioned `two_tower_YYYYMMDDHHMM.safetensors` beside `two_tower_latest.safetensors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from trainer.errors import UserError
from trainer.files import atomic_path
from trainer.ml.model import LAYOUT, LEGACY_LAYOUT, fold_in

FORMAT = "two_tower/1"


@dataclass(frozen=True)
class ModelArtifact:
    version: str
    config: dict
    user_ids: list[str]
    video_ids: list[str]
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    history_indptr: np.ndarray
    history_indices: np.ndarray
    metrics: dict
    fingerprint: str
    tensors: dict[str, torch.Tensor]
    layout: str = LAYOUT

    def embed_new_user(self, video_ids: list[str]) -> np.ndarray:
        """Vector for an app user from the videos they liked, without retraining."""
        index = {video: i for i, video in enumerate(self.video_ids)}
        known = [index[v] for v in video_ids if v in index]
        if not known:
            raise UserError("none of the given videos is in the model's catalog")
        return fold_in(self.item_vectors, known, self.layout)


def save_artifact(path: Path, artifact: ModelArtifact) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a model behind."""
    tensors = dict(artifact.tensors)
    tensors["user_vectors"] = torch.as_tensor(artifact.user_vectors)
    tensors["item_vectors"] = torch.as_tensor(artifact.item_vectors)
    tensors["history_indptr"] = torch.as_tensor(artifact.history_indptr)
    tensors["history_indices"] = torch.as_tensor(artifact.history_indices)
    metadata = {
        "format": FORMAT,
        "version": artifact.version,
        "config": json.dumps(artifact.config),
        "user_ids": json.dumps(artifact.user_ids),
        "video_ids": json.dumps(artifact.video_ids),
        "metrics": json.dumps(artifact.metrics),
        "fingerprint": artifact.fingerprint,
        "layout": artifact.layout,
    }
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_artifact(path: Path) -> ModelArtifact:
    if not path.exists():
        raise UserError(f"no model file at {path}: train one with `python -m trainer`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise UserError(f"{path} is not a readable model file: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path} has format {metadata.get('format')!r}, expected {FORMAT!r}")
    special = ("user_vectors", "item_vectors", "history_indptr", "history_indices")
    return ModelArtifact(
        version=metadata["version"],
        config=json.loads(metadata["config"]),
        user_ids=json.loads(metadata["user_ids"]),
        video_ids=json.loads(metadata["video_ids"]),
        user_vectors=tensors["user_vectors"].numpy(),
        item_vectors=tensors["item_vectors"].numpy(),
        history_indptr=tensors["history_indptr"].numpy(),
        history_indices=tensors["history_indices"].numpy(),
        metrics=json.loads(metadata["metrics"]),
        fingerprint=metadata["fingerprint"],
        tensors={k: v for k, v in tensors.items() if k not in special},
        layout=metadata.get("layout", LEGACY_LAYOUT),
    )
