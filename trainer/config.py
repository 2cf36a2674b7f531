"""Every training knob in one typed place; the CLI flags map onto these fields one to one."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Objective = Literal["softmax", "bce"]


@dataclass(frozen=True)
class TrainConfig:
    embedding_dim: int = 64
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 0.03
    # softmax: in-batch sampled softmax with log-Q correction (Yi et al. 2019);
    # bce: the brief's pointwise objective on positives + the SQL negative samples.
    objective: Objective = "softmax"
    temperature: float = 0.2
    logq_correction: bool = True
    uniform_negatives: int = (
        1024  # extra uniformly drawn videos per softmax batch (0: in-batch only)
    )
    star_weighting: bool = False  # scale each positive's loss by stars / 5 (the brief's variant)
    history_pooling: bool = True  # user = id embedding + mean of the user's train videos
    id_dropout: float = 0.0  # share of training rows whose user ID embedding is zeroed
    patience: int = 3  # epochs without a better valid NDCG@10 before stopping
    eval_users: int = 5_000  # users sampled for the per-epoch validation
    final_eval_users: int = 20_000  # users sampled for the final report and the gate (0: all)
    seed: int = 42
    device: str = "auto"
    ks: tuple[int, ...] = (10, 20)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OutputPaths:
    """Where a training run writes; versioned copies are written beside out_model."""

    out_model: Path = Path("artifacts/two_tower_latest.safetensors")
    out_video_emb: Path = Path("artifacts/video_embeddings.parquet")
    out_user_emb: Path = Path("artifacts/user_embeddings.parquet")
