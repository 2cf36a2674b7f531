"""One training run end to end: read marts -> fit -> evaluate beside baselines -> write outputs.

Outputs are written only after training and evaluation succeed, each file atomically and the
database in one transaction, so a failed run leaves the previous model and embeddings as they were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from trainer.backends import ServingTables, Warehouse
from trainer.errors import UserError
from trainer.files import atomic_path
from trainer.jobs.text_tables import report_tables
from trainer.ml.config import OutputPaths, TrainConfig
from trainer.ml.data import Dataset, read_dataset
from trainer.ml.evaluate import EvalResult, eval_users, evaluate
from trainer.ml.model import LAYOUT_EXTRA
from trainer.ml.scorers import embedding_scorer, popularity_scorer, random_scorer
from trainer.ml.train import select_and_fit
from trainer.release.artifact import ModelArtifact, save_artifact
from trainer.release.versions import first_free, new_version


@dataclass
class RunSummary:
    version: str
    evaluations: dict[str, EvalResult]
    epochs: list[dict]
    artifact_paths: list[Path]
    timings: dict[str, float] = field(default_factory=dict)
    n_users: int = 0
    n_videos: int = 0
    fingerprint: str = ""

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: result.metrics for name, result in self.evaluations.items()}

    def table(self) -> str:
        return report_tables(self.evaluations)


def refuse_diverged(user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
    """A model with NaN or infinite values is never evaluated, saved or published."""
    if not (np.isfinite(user_vectors).all() and np.isfinite(item_vectors).all()):
        raise UserError(
            "training diverged: the model has NaN or infinite values (try a smaller --lr); "
            "nothing was saved or published"
        )


def final_eval_limit(cfg: TrainConfig, n_items: int) -> int:
    """Users in the final report and the gate: `final_eval_users` (0: all of them), fewer for
    catalogs so big that full ranking would cost more than `final_eval_scores` user x video
    scores, never under 2,000 users (their intervals stay useful; the gate's test is paired)."""
    if cfg.final_eval_users <= 0:
        return 0
    return min(cfg.final_eval_users, max(2_000, cfg.final_eval_scores // max(n_items, 1)))


def evaluate_all(
    data: Dataset, user_vectors: np.ndarray, item_vectors: np.ndarray, cfg: TrainConfig
):
    """The model beside popularity and random, on the same users and the same masking."""
    users = eval_users(data, final_eval_limit(cfg, data.n_items), cfg.seed)
    return {
        "two_tower": evaluate(
            embedding_scorer(user_vectors, item_vectors, LAYOUT_EXTRA), data, cfg.ks, users
        ),
        "popularity": evaluate(popularity_scorer(data), data, cfg.ks, users),
        "random": evaluate(random_scorer(data, cfg.seed), data, cfg.ks, users),
    }


@dataclass
class Trained:
    """A trained and evaluated model, not yet written anywhere."""

    data: Dataset
    artifact: ModelArtifact
    evaluations: dict[str, EvalResult]
    epochs: list[dict]
    timings: dict[str, float]
    started_at: datetime


def train_and_evaluate(
    warehouse: Warehouse, cfg: TrainConfig, progress: bool = True, version: str | None = None
) -> Trained:
    """Read the marts, fit, export vectors, evaluate beside the baselines."""
    started_at = utc_now()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = read_dataset(warehouse, with_negatives=cfg.objective == "bce")
    timings["read_seconds"] = time.perf_counter() - started
    if progress:
        print(
            f"training on {len(data.train_users):,} train positives of {data.n_users:,} users "
            f"and {data.n_items:,} videos",
            flush=True,
        )
    started = time.perf_counter()
    result = select_and_fit(data, cfg, progress=progress)
    user_vectors, item_vectors = result.model.export(data.train)
    timings["train_seconds"] = time.perf_counter() - started
    refuse_diverged(user_vectors, item_vectors)
    started = time.perf_counter()
    evaluations = evaluate_all(data, user_vectors, item_vectors, cfg)
    timings["evaluate_seconds"] = time.perf_counter() - started
    metrics = {name: r.summary() for name, r in evaluations.items()}
    artifact = ModelArtifact(
        version=version or new_version(),
        config=cfg.to_dict(),
        user_ids=data.user_ids,
        video_ids=data.video_ids,
        user_vectors=user_vectors,
        item_vectors=item_vectors,
        history_indptr=data.train.indptr,
        history_indices=data.train.indices,
        metrics={"valid": metrics, "epochs": result.epochs, "best_epoch": result.best_epoch},
        fingerprint=data.fingerprint,
        tensors={k: v.detach().clone() for k, v in result.model.state_dict().items()},
    )
    return Trained(data, artifact, evaluations, result.epochs, timings, started_at)


def write_embeddings(
    warehouse: Warehouse, artifact: ModelArtifact, serving: ServingTables | None = None
) -> None:
    """Replace the embedding tables with the artifact's vectors (one transaction)."""
    warehouse.publish_embeddings(
        (artifact.video_ids, artifact.item_vectors),
        (artifact.user_ids, artifact.user_vectors),
        artifact.version,
        serving,
    )


SERVING_QUERIES = {
    "videos": "select cast(video_id as varchar) as id, product_url from video_catalog "
    "where is_registered or register_at_publish order by 1",
    "reviewed": "select distinct user_id, cast(video_id as varchar) as video_id "
    "from interactions where video_id is not null",
    "positives": "select cast(video_id as varchar) as video_id, positives from video_popularity",
}


def read_serving_tables(warehouse: Warehouse) -> ServingTables:
    """What another database needs to serve this run's model, read from this one's marts:
    the videos the data refers to (registered, or to register), every reviewed pair,
    positives per video."""
    frames = {name: warehouse.read(query) for name, query in SERVING_QUERIES.items()}
    return ServingTables(**{name: frame.to_arrow() for name, frame in frames.items()})


def run_record(trained: Trained, target: str, **fields: object) -> dict:
    """The model_runs row of a run (fields override or extend the defaults)."""
    return {
        "model_version": trained.artifact.version,
        "started_at": trained.started_at,
        "finished_at": utc_now(),
        "target": target,
        "data_fingerprint": trained.data.fingerprint,
        "config": trained.artifact.config,
        "metrics": {name: r.summary() for name, r in trained.evaluations.items()},
        "published": False,
        **fields,
    }


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def unique_version(warehouse: Warehouse) -> str:
    """A new version name no run has recorded yet (the format: trainer/release/versions.py)."""
    return first_free(
        new_version(),
        lambda version: warehouse.run_row(version) is not None,
    )


def train_run(
    warehouse: Warehouse,
    cfg: TrainConfig,
    outputs: OutputPaths,
    publish: bool = True,
    progress: bool = True,
    version: str | None = None,
    target: str = "",
) -> RunSummary:
    """`python -m trainer train`: train, evaluate, write files and (by default) publish."""
    trained = train_and_evaluate(warehouse, cfg, progress, version or unique_version(warehouse))
    timings = trained.timings
    started = time.perf_counter()
    paths = write_files(trained.artifact, outputs)
    timings["write_files_seconds"] = time.perf_counter() - started
    if publish:
        started = time.perf_counter()
        write_embeddings(warehouse, trained.artifact)
        timings["publish_seconds"] = time.perf_counter() - started
    notes = {
        "timings": timings,
        "epochs": trained.epochs,
        "best_epoch": trained.artifact.metrics["best_epoch"],
        "command": "train",
    }
    warehouse.record_run(run_record(trained, target, published=publish, notes=notes))
    data = trained.data
    return RunSummary(
        trained.artifact.version,
        trained.evaluations,
        trained.epochs,
        paths,
        timings,
        data.n_users,
        data.n_items,
        data.fingerprint,
    )


def write_files(artifact: ModelArtifact, outputs: OutputPaths) -> list[Path]:
    """Model file (versioned + latest) and the two embedding parquet files."""
    return [write_versioned(artifact, outputs), *write_latest(artifact, outputs)]


def write_versioned(artifact: ModelArtifact, outputs: OutputPaths) -> Path:
    """The model file under its version's name, beside --out-model: what the store receives. A
    new name each run, so writing it never replaces what is live."""
    latest = outputs.out_model
    versioned = latest.with_name(f"{artifact.version}{latest.suffix or '.safetensors'}")
    save_artifact(versioned, artifact)
    return versioned


def write_latest(artifact: ModelArtifact, outputs: OutputPaths) -> list[Path]:
    """--out-model and the two embedding parquet files: the files that say what is live, so the
    pipeline writes them only for a model it published (a challenger the gate rejects leaves
    them as they were)."""
    latest = outputs.out_model
    save_artifact(latest, artifact)
    write_embeddings_parquet(
        outputs.out_video_emb,
        "video_id",
        artifact.video_ids,
        artifact.item_vectors,
        artifact.version,
    )
    write_embeddings_parquet(
        outputs.out_user_emb, "user_id", artifact.user_ids, artifact.user_vectors, artifact.version
    )
    return [latest, outputs.out_video_emb, outputs.out_user_emb]


def write_embeddings_parquet(
    path: Path, key: str, ids: list[str], vectors: np.ndarray, version: str
) -> None:
    frame = pl.DataFrame(
        {
            key: ids,
            "embedding": pl.Series(vectors.astype(np.float32)).cast(
                pl.Array(pl.Float32, vectors.shape[1])
            ),
            "model_version": [version] * len(ids),
        }
    )
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
