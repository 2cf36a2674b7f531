"""The training loop: user-batched epochs, early stopping on the tune slice, then a refit.

`select_and_fit` is what `python -m trainer` runs:
  1. selection: fit on train without the tune slice, score the tune slice after each epoch,
     stop after `patience` epochs without a better tune NDCG@10, keep the best epoch's model;
  2. refit: a fresh model on all of train (the tune slice back in) for that many epochs, with no
     evaluation at all. Continuing the selection model for an epoch or two instead costs far
     less and ranks worse on a long tail (README, "How the defaults were chosen").
The valid split is in neither: it only reports and gates, after this returns.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from trainer.ml.batches import user_batches
from trainer.ml.config import TrainConfig
from trainer.ml.data import Csr, Dataset
from trainer.ml.evaluate import eval_users, evaluate
from trainer.ml.model import LAYOUT_EXTRA, TwoTower
from trainer.ml.optim import Adam
from trainer.ml.scorers import BoundedScorer, Scorer
from trainer.ml.tasks import PointwiseHead, bce_loss, sampling_distribution, softmax_loss


@dataclass
class FitResult:
    model: TwoTower
    epochs: list[dict] = field(default_factory=list)  # selection's, with tune metrics
    best_epoch: int = 0
    seconds_per_epoch: list[float] = field(default_factory=list)
    refit_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def select_and_fit(data: Dataset, cfg: TrainConfig, progress: bool = True) -> FitResult:
    """Choose the epoch count on the tune slice, then refit on all of train (module doc)."""
    selection = fit(data.selection_view(), cfg, progress)
    if not cfg.refit:
        return selection
    started = time.perf_counter()
    epochs = max(selection.best_epoch, 1)
    final = fit(data.without_valid(), replace(cfg, epochs=epochs), progress, select=False)
    selection.model = final.model
    selection.refit_seconds = time.perf_counter() - started
    if progress:
        print(f"refit on all of train: {epochs} epochs ({selection.refit_seconds:.1f}s)")
    return selection


def _optimizer(model: TwoTower, head: PointwiseHead | None, lr: float) -> Adam:
    tables = (model.user_embedding, model.item_embedding, model.item_bias)
    params = [p for m in tables for p in m.parameters() if p.requires_grad and p.numel()]
    return Adam(params + (list(head.parameters()) if head is not None else []), lr=lr)


def fit(
    data: Dataset,
    cfg: TrainConfig,
    progress: bool = True,
    select: bool = True,
    start: TwoTower | None = None,
) -> FitResult:
    """Train on data.train for up to cfg.epochs, from `start`'s weights when given (else the
    SVD or a random start; benchmarks/refit.py continues a selection model this way). With
    `select`, score data.valid (for select_and_fit: the tune slice) after each epoch, stop
    early and keep the best epoch."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    sampled = data.n_items > cfg.full_softmax_items
    model = TwoTower(
        data.n_users,
        data.n_items,
        cfg.embedding_dim - LAYOUT_EXTRA,
        cfg.history_pooling,
        cfg.user_ids,
        sampled,
        item_bias=cfg.item_bias,
    ).to(device)
    if start is not None:
        model.load_state_dict(start.state_dict())
    elif cfg.init == "svd":
        spectral_init(model, data.train, cfg.seed)
    head = PointwiseHead().to(device) if cfg.objective == "bce" else None
    optimizer = _optimizer(model, head, cfg.lr)
    weights = (
        data.train_weights if cfg.star_weighting else np.ones(len(data.train_items), np.float32)
    )
    negatives = None
    if cfg.objective == "bce" and data.negatives is not None:
        negatives = Csr.from_pairs(*data.negatives, data.n_users)
    q = sampling_distribution(data.item_counts(), cfg.negative_power) if sampled else None
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    tune_users = eval_users(data, min(cfg.eval_users, _eval_budget(cfg, data)), cfg.seed)

    result = FitResult(model)
    best_score, best_state, stale = -math.inf, None, 0
    steps = math.ceil(data.n_users / cfg.batch_size)
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        total = 0.0
        batches = user_batches(
            data.train,
            weights,
            cfg.batch_size,
            cfg.holdout,
            rng,
            device,
            negatives,
            cfg.thin_share,
            cfg.thin_inputs,
            cfg.thin_balance,
        )
        bar = tqdm(
            batches,
            total=steps,
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=None if progress else True,
            leave=False,
            unit="batch",
        )
        for step, batch in enumerate(bar):
            if head is None:
                loss = softmax_loss(
                    model, batch, cfg.temperature, cfg.negatives if sampled else 0, generator, q,
                    cfg.logq_correction, cfg.id_dropout,
                )  # fmt: skip
            else:
                loss = bce_loss(model, head, batch, cfg.id_dropout)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        result.seconds_per_epoch.append(time.perf_counter() - started)
        record = {"epoch": epoch, "loss": total / steps, "seconds": result.seconds_per_epoch[-1]}
        if select:
            model.eval()
            scorer = tune_scorer(model, data, tune_users)
            metrics = evaluate(scorer, data, (10,), tune_users, intervals=False).metrics
            record.update(
                {"tune recall@10": metrics["recall@10"], "tune ndcg@10": metrics["ndcg@10"]}
            )
        result.epochs.append(record)
        if progress:
            tuned = ""
            if select:
                tuned = (
                    f"  tune recall@10 {record['tune recall@10']:.4f}"
                    f"  ndcg@10 {record['tune ndcg@10']:.4f}"
                )
            print(
                f"epoch {epoch:>3}  loss {record['loss']:.4f}{tuned}  ({record['seconds']:.1f}s)",
                flush=True,
            )
        if not select:
            result.best_epoch = epoch
            continue
        if record["tune ndcg@10"] > best_score:
            best_score, best_state, stale = (
                record["tune ndcg@10"],
                copy.deepcopy(model.state_dict()),
                0,
            )
            result.best_epoch = epoch
        else:
            stale += 1
            if stale >= cfg.patience:
                if progress:
                    print(
                        f"early stop: no better tune ndcg@10 for {cfg.patience} epochs; "
                        f"best was epoch {result.best_epoch}",
                        flush=True,
                    )
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    return result


def tune_scorer(model: TwoTower, data: Dataset, users: np.ndarray) -> Scorer:
    """Scores for the sampled tune users only: their [1, u] against every [bias, v], the order
    the published vectors give (model.py), without laying out a vector for every user."""
    row = np.full(data.n_users, -1, dtype=np.int64)
    row[users] = np.arange(len(users))
    vectors = model.history_vectors(data.train, users)
    return BoundedScorer(vectors, model.scoring_vectors().detach().cpu(), head=1, rows=row)


def _eval_budget(cfg: TrainConfig, data: Dataset) -> int:
    """Users scored per selection epoch: full ranking costs users x videos, so big catalogs
    score fewer users (at least 500) to keep an epoch's check cheaper than the epoch."""
    return max(500, cfg.eval_scores // max(data.n_items, 1))


@torch.no_grad()
def spectral_init(model: TwoTower, train: Csr, seed: int) -> None:
    """Start the item table from the top right singular vectors of the user x video matrix,
    its columns scaled by popularity^-1/2 so popular videos do not take every direction: a
    closed-form answer to which videos go together, which the softmax then refines in a few
    epochs instead of twenty from noise. An ID embedding (if any) starts at zero."""
    n_users, n_items, dim = model.n_users, model.n_items, model.item_embedding.embedding_dim
    rows = torch.as_tensor(np.repeat(np.arange(n_users), train.lengths()))
    cols = torch.as_tensor(train.indices)
    counts = torch.bincount(cols, minlength=n_items).clamp(min=1).float()
    x = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), counts[cols] ** -0.5, (n_users, n_items), check_invariants=True
    ).coalesce()
    torch.manual_seed(seed)
    rank = min(dim, n_users, n_items)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": matmul is all we use
        warnings.simplefilter("ignore", UserWarning)
        _, s, v = torch.svd_lowrank(x.to_sparse_csr(), q=rank, niter=2)  # CSR: 2x COO's speed
    init = torch.zeros(n_items, dim)
    init[:, :rank] = v * s.sqrt()
    init = init / init.norm(dim=1, keepdim=True).clamp(min=1e-6)
    model.item_embedding.weight.copy_(init.to(model.item_embedding.weight.device))
    model.user_embedding.weight.zero_()
