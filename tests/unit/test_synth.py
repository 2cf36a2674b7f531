"""The synthetic scrape: seeded, sized by flags, long-tailed, and dirty in the ways scrapes are."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from trainer.ingest.load import parse_reviews_csv
from trainer.ingest.synth import SynthConfig, write_synthetic_csv


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    digests = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        path = tmp_path / f"{name}.csv"
        write_synthetic_csv(path, SynthConfig(reviews=3_000, seed=seed))
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_shape_and_dirt(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    counts = write_synthetic_csv(path, SynthConfig(reviews=20_000, seed=0))
    parsed = parse_reviews_csv(path)
    assert parsed.data_lines == counts["lines"] > 20_000  # duplicates and bad lines added
    assert {"ragged_line", "undecodable"} <= set(parsed.rejects.column("reason").to_pylist())
    rows = pl.from_arrow(parsed.reviews)
    urls = rows["product_url"]
    assert urls.str.starts_with("http://").any() and urls.str.contains(r"\?i3_ref=").any()
    assert urls.str.contains("#review").any() and urls.str.contains("cid=SSN").any()
    assert rows["stars"].is_in(["6", "3.5", "★★★★"]).sum() > 0
    assert rows.select(
        pl.struct("product_url", "reviewer_id", "stars").is_duplicated().any()
    ).item()
    per_video = rows.group_by("product_url").len()["len"]
    per_user = rows.group_by("reviewer_id").len()["len"]
    # Long tail: the median video and reviewer have a handful of reviews, the top ones far more.
    assert per_video.median() <= 3 and per_video.max() > 20 * per_video.median()
    assert per_user.median() <= 8 and per_user.max() > 5 * per_user.median()
