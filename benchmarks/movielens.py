"""GroupLens MovieLens ratings -> the scrape's review CSV, so the README's ML-100K figures can be
reproduced from the public download (https://grouplens.org/datasets/movielens/100k/, `u.data`).

    python -m benchmarks.movielens ml-100k/u.data data/ml100k_reviews.csv

Each rating line `user<TAB>item<TAB>rating<TAB>timestamp` becomes
`https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ml100k<item:05d>/,r<user>,<rating>`, in the
file's order: the product URL in the DMM shape the loader parses, the user as a reviewer id, the
1-5 rating as stars. Nothing is dropped here; the loader and dbt judge every line as usual.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from trainer.files import atomic_path

URL = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ml100k{item:05d}/"


def convert(ratings: Path, out: Path) -> int:
    """Write the review CSV for a `u.data`-style file; returns the number of rows written."""
    rows = 0
    with (
        ratings.open(encoding="latin-1") as src,
        atomic_path(out) as tmp,
        tmp.open("w", newline="", encoding="utf-8") as dst,
    ):
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(["product_url", "reviewer_id", "stars"])
        for line in src:
            if not line.strip():
                continue
            user, item, rating = line.split("\t")[:3]
            writer.writerow([URL.format(item=int(item)), f"r{int(user)}", int(rating)])
            rows += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.movielens", description=__doc__)
    parser.add_argument("ratings", type=Path, help="GroupLens u.data (tab-separated)")
    parser.add_argument("out", type=Path, help="the review CSV to write")
    args = parser.parse_args(argv)
    print(f"wrote {args.out}: {convert(args.ratings, args.out):,} reviews")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
