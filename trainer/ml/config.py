"""Every training knob and output location in one typed place; the CLI flags map onto these
fields one to one and take their defaults from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Objective = Literal["softmax", "bce"]


@dataclass(frozen=True)
class TrainConfig:
    embedding_dim: int = 64  # published vector size: 62 learned coordinates + 2 (model.py)
    epochs: int = 30  # at most; selection stops early on the tune slice
    batch_size: int = 256  # users per step, each with all of their train positives
    lr: float = 0.01
    # softmax: multinomial likelihood over the catalog (full, or sampled with log-Q correction
    # above `negatives` videos); bce: the brief's pointwise objective on the SQL negatives.
    objective: Objective = "softmax"
    temperature: float = 0.2
    logq_correction: bool = True
    full_softmax_items: int = 4096  # catalogs up to this size: every video is a negative
    negatives: int = 1024  # bigger catalogs: this many sampled negatives per step
    negative_power: float = 0.75  # sampled negatives ~ (train count + 1) ** power
    holdout: float = 0.5  # per epoch, share of a user's positives predicted from the rest
    thin_share: float = 0.5  # per epoch, share of users who pool only `thin_inputs` positives
    thin_inputs: int = 3  # as a new user folded in from three likes (README: defaults chosen)
    thin_balance: bool = True  # a thin user's target weights total holdout * positives
    star_weighting: bool = False  # scale each positive's loss by stars / 5 (the brief's variant)
    item_bias: bool = True  # score = bias(video) + cosine; off: plain cosine
    history_pooling: bool = True  # user = mean of the user's train videos' vectors (+ ID)
    user_ids: bool = False  # add a learned per-user ID embedding to the user tower
    id_dropout: float = 0.0  # with user_ids: share of batch users whose ID embedding is zeroed
    patience: int = 3  # epochs without a better tune NDCG@10 before stopping
    init: str = "svd"  # svd: item table from a truncated SVD of train; random: N(0, 0.1)
    refit: bool = True  # retrain on all of train for the chosen number of epochs
    eval_users: int = 5_000  # users scored on the tune slice per selection epoch (at most)
    eval_scores: int = 20_000_000  # and at most this many user x video scores per epoch
    final_eval_users: int = 20_000  # users sampled for the final report and the gate (0: all)
    final_eval_scores: int = 500_000_000  # and fewer for huge catalogs (runner.final_eval_limit)
    seed: int = 42
    device: str = "auto"
    ks: tuple[int, ...] = (10, 20)

    def to_dict(self) -> dict:
        return asdict(self)


# The local artifact store (versions + latest), used when SUPABASE_URL is not set.
DEFAULT_STORE_ROOT = Path("artifacts/models")


@dataclass(frozen=True)
class OutputPaths:
    """Where a training run writes; versioned copies are written beside out_model."""

    out_model: Path = Path("artifacts/two_tower_latest.safetensors")
    out_video_emb: Path = Path("artifacts/video_embeddings.parquet")
    out_user_emb: Path = Path("artifacts/user_embeddings.parquet")
