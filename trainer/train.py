"""The training loop: shuffle, batch, step, validate each epoch, stop early, keep the best."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from trainer.config import TrainConfig
from trainer.data import Dataset
from trainer.evaluate import embedding_scorer, eval_users, evaluate
from trainer.model import TwoTower
from trainer.tasks import PointwiseHead, bce_loss, softmax_loss


@dataclass
class FitResult:
    model: TwoTower
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds_per_epoch: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _examples(data: Dataset, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Training rows as tensors: positives (and for bce the SQL negatives, label 0)."""
    users, items = data.train_users, data.train_items
    weights = data.train_weights if cfg.star_weighting else np.ones(len(users), np.float32)
    labels = np.ones(len(users), np.float32)
    if cfg.objective == "bce" and data.negatives is not None:
        neg_users, neg_items = data.negatives
        users = np.concatenate([users, neg_users])
        items = np.concatenate([items, neg_items])
        weights = np.concatenate([weights, np.ones(len(neg_users), np.float32)])
        labels = np.concatenate([labels, np.zeros(len(neg_users), np.float32)])
    return {
        "users": torch.as_tensor(users),
        "items": torch.as_tensor(items),
        "weights": torch.as_tensor(weights),
        "labels": torch.as_tensor(labels),
    }


def fit(data: Dataset, cfg: TrainConfig, progress: bool = True) -> FitResult:
    """Train on data.train, validate on data.valid each epoch; return the best model by NDCG@10."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model = TwoTower(
        data.n_users, data.n_items, cfg.embedding_dim, data.train if cfg.history_pooling else None
    ).to(device)
    head = PointwiseHead().to(device)
    # Embeddings get sparse gradients (only the rows a batch touched): SparseAdam updates just
    # those rows, so a step costs the same whatever the catalog size.
    optimizers = [torch.optim.SparseAdam(list(model.parameters()), lr=cfg.lr)]
    if cfg.objective == "bce":
        optimizers.append(torch.optim.Adam(head.parameters(), lr=cfg.lr))
    rows = {name: tensor.to(device) for name, tensor in _examples(data, cfg).items()}
    counts = torch.as_tensor(data.item_counts(), dtype=torch.float32, device=device)
    log_q = torch.log(counts / counts.sum()) if cfg.logq_correction else None
    generator = torch.Generator().manual_seed(cfg.seed)
    valid_users = eval_users(data, cfg.eval_users, cfg.seed)

    result = FitResult(model)
    best_score, best_state, stale = -math.inf, copy.deepcopy(model.state_dict()), 0
    n_rows = len(rows["users"])
    steps = math.ceil(n_rows / cfg.batch_size)
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n_rows, generator=generator).to(device)
        total = 0.0
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=None if progress else True,
            leave=False,
            unit="batch",
        )
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            weights = rows["weights"][idx] if cfg.star_weighting else None
            if cfg.objective == "softmax":
                uniform = torch.randint(
                    data.n_items, (min(cfg.uniform_negatives, data.n_items),), generator=generator
                ).to(device)
                loss = softmax_loss(
                    model,
                    rows["users"][idx],
                    rows["items"][idx],
                    weights,
                    log_q,
                    cfg.temperature,
                    uniform,
                    cfg.id_dropout,
                )
            else:
                loss = bce_loss(
                    model,
                    head,
                    rows["users"][idx],
                    rows["items"][idx],
                    rows["labels"][idx],
                    weights,
                )
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            total += float(loss.detach())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        result.seconds_per_epoch.append(time.perf_counter() - started)
        model.eval()
        users_vec, items_vec = model.export()
        metrics = evaluate(embedding_scorer(users_vec, items_vec), data, (10,), valid_users).metrics
        record = {
            "epoch": epoch,
            "loss": total / steps,
            "recall@10": metrics["recall@10"],
            "ndcg@10": metrics["ndcg@10"],
            "seconds": result.seconds_per_epoch[-1],
        }
        result.epochs.append(record)
        if progress:
            print(
                f"epoch {epoch:>3}  loss {record['loss']:.4f}  valid recall@10 "
                f"{record['recall@10']:.4f}  ndcg@10 {record['ndcg@10']:.4f}  "
                f"({record['seconds']:.1f}s)",
                flush=True,
            )
        if metrics["ndcg@10"] > best_score:
            best_score, best_state, stale = metrics["ndcg@10"], copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch
        else:
            stale += 1
            if stale >= cfg.patience:
                if progress:
                    print(
                        f"early stop: no better valid ndcg@10 for {cfg.patience} epochs; "
                        f"keeping epoch {result.best_epoch}",
                        flush=True,
                    )
                break
    model.load_state_dict(best_state)
    result.model = model.cpu().eval()
    return result
