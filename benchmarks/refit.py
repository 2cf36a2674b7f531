"""How to refit after selection, judged without the valid split.

    python -m benchmarks.refit [CSV ...] [--synth longtail:100000 --synth dense:300000]

The refit trains on the tune slice too, so the tune slice cannot judge it, and valid must not
choose anything. Here the tune slice plays valid and a seeded fifth of each remaining train row
plays tune: selection runs on the rest, then each refit strategy trains on all but the tune
slice and is scored on it. Printed per dataset: no refit, a fresh refit for the chosen epoch
count (the default), and the selection model continued for one or two epochs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.quality import build_splits, synth_csv
from trainer.ml.config import TrainConfig
from trainer.ml.data import Dataset, build_dataset
from trainer.ml.evaluate import eval_users, evaluate
from trainer.ml.model import TwoTower
from trainer.ml.scorers import embedding_scorer
from trainer.ml.train import fit


def compare(data: Dataset, cfg: TrainConfig) -> list[str]:
    outer = data.selection_view()  # valid is gone: the tune slice is the held-out part
    inner_tune = np.random.default_rng(cfg.seed).random(len(outer.train_users)) < 0.2
    outer = replace(outer, train_tune=inner_tune)
    users = eval_users(outer, 20_000, cfg.seed)

    def score(model: TwoTower, seconds: float, name: str) -> str:
        u, v = model.export(outer.train)
        m = evaluate(embedding_scorer(u, v), outer, (10,), users, intervals=False).metrics
        figures = f"recall@10 {m['recall@10']:.4f}  ndcg@10 {m['ndcg@10']:.4f}"
        return f"  {name:<30} {figures}  {seconds:5.1f}s"

    started = time.perf_counter()
    selection = fit(outer.selection_view(), cfg, progress=False)
    lines = [score(selection.model, time.perf_counter() - started, "no refit (selection only)")]
    full = outer.without_valid()
    started = time.perf_counter()
    fresh = fit(full, replace(cfg, epochs=selection.best_epoch), progress=False, select=False)
    seconds = time.perf_counter() - started
    lines.append(score(fresh.model, seconds, f"fresh, {selection.best_epoch} epochs (default)"))
    for epochs in (1, 2):
        started = time.perf_counter()
        continued = fit(full, replace(cfg, epochs=epochs), False, False, start=selection.model)
        seconds = time.perf_counter() - started
        lines.append(score(continued.model, seconds, f"continued, {epochs} epoch(s)"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, nargs="*")
    parser.add_argument("--synth", action="append", default=[], metavar="SHAPE:REVIEWS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for csv in [*args.csv, *(synth_csv(spec, workdir) for spec in args.synth)]:
            data = build_dataset(build_splits(csv, workdir), None)
            print(f"{csv.name}: tune slice as held-out, inner tune slice for selection")
            print("\n".join(compare(data, TrainConfig())), flush=True)


if __name__ == "__main__":
    main()
