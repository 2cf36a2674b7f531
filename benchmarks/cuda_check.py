"""`--device cuda` stays correct: the same small training on the GPU and on the CPU.

    python -m benchmarks.cuda_check [--reviews 200000] [--shape longtail]

Builds a synthetic split in a temporary DuckDB file, trains the default two-tower on cuda and on
cpu from the same seed, and prints both valid Recall@10 / NDCG@10 and training seconds side by
side. Kernels differ between devices, so vectors are not bit-equal; the check fails (exit 1)
when the GPU's recall is more than 10% below the CPU's. Sized to finish in well under 5 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.quality import build_splits
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.ml.config import TrainConfig
from trainer.ml.data import build_dataset
from trainer.ml.evaluate import evaluate
from trainer.ml.scorers import embedding_scorer
from trainer.ml.train import select_and_fit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=200_000)
    parser.add_argument("--shape", default="longtail", choices=["longtail", "dense"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "reviews.csv"
        write_synthetic_csv(csv, SynthConfig(reviews=args.reviews, shape=args.shape))
        data = build_dataset(build_splits(csv, Path(tmp)), None)
    figures = {}
    for device in ("cuda", "cpu"):
        started = time.perf_counter()
        result = select_and_fit(data, replace(TrainConfig(), device=device), progress=False)
        users, items = result.model.export(data.train)
        seconds = time.perf_counter() - started
        metrics = evaluate(embedding_scorer(users, items), data, (10,), intervals=False).metrics
        figures[device] = metrics["recall@10"]
        print(f"{device}: recall@10 {metrics['recall@10']:.4f}  ndcg@10 {metrics['ndcg@10']:.4f}"
              f"  {result.best_epoch} epochs  {seconds:.1f} s", flush=True)  # fmt: skip
    ok = figures["cuda"] >= 0.9 * figures["cpu"]
    print("cuda OK" if ok else "cuda recall is more than 10% below cpu")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
