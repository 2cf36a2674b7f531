"""A two-tower default against its alternatives, without the valid split and without the peers.

    python -m benchmarks.nested_sweep [CSV ...] [--synth longtail:100000 ...]
        --variant NAME=JSON [--variant ...] [--splits 42 7 3] [--train-seeds 42 1]

Each dataset's dbt split is built once; for every split seed, `benchmarks.quality`'s nested split
(valid dropped, the tune slice plays valid, a seeded fifth of the remaining train plays tune)
and its cold users; for every training seed, the default and each variant are fit and scored.
One configuration beats another on a shape only if it does across splits and seeds: a single
run's early stop moves a figure by several percent. The summary gives, per variant, how many
(dataset, split, seed) runs it beats the default on and its mean relative change.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.quality import (
    build_splits,
    judged,
    nested_splits,
    split_cold,
    synth_csv,
    two_tower,
)
from trainer.ml.data import Dataset

FIGURES = ("recall@10", "ndcg@10", "cold recall@10")


def scores(warm: Dataset, cold: Dataset, seed: int, overrides: dict) -> dict:
    fitted = two_tower(warm, seed, overrides)
    return {**judged(fitted, warm, cold), "note": fitted.note}


def compare(label: str, warm: Dataset, cold: Dataset, seed: int, variants: dict, change: dict):
    """Fit the default and each variant on one nested split; print them, record the changes."""

    def show(name: str, got: dict) -> None:
        line = "  ".join(f"{f} {got[f]:.4f}" for f in FIGURES)
        print(f"{label} {name}: {line}  ({got['note']})", flush=True)

    base = scores(warm, cold, seed, {})
    show("default", base)
    for name, overrides in variants.items():
        got = scores(warm, cold, seed, overrides)
        show(name, got)
        for f in FIGURES:
            change[name][f].append(got[f] / max(base[f], 1e-12) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, nargs="*")
    parser.add_argument("--synth", action="append", default=[], metavar="SHAPE:REVIEWS")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--splits", type=int, nargs="+", default=[42, 7, 3])
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[42, 1])
    args = parser.parse_args()
    variants = {v.split("=", 1)[0]: json.loads(v.split("=", 1)[1]) for v in args.variant}
    change: dict[str, dict[str, list[float]]] = {v: {f: [] for f in FIGURES} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for csv in [*args.csv, *(synth_csv(spec, workdir) for spec in args.synth)]:
            outer = build_splits(csv, workdir)
            for split in args.splits:
                warm, cold = split_cold(nested_splits(outer, split), 0.1, 3, split)
                for seed in args.train_seeds:
                    compare(f"{csv.name} split {split} seed {seed}", warm, cold, seed, variants,
                            change)  # fmt: skip
    for name, by_figure in change.items():
        parts = [
            f"{f} better in {sum(c > 0 for c in v)}/{len(v)}, mean {100 * np.mean(v):+.1f}%"
            for f, v in by_figure.items()
        ]
        print(f"{name} against the default: " + "; ".join(parts))


if __name__ == "__main__":
    main()
