"""The MovieLens converter writes the review CSV the README's ML-100K figures were made from."""

from __future__ import annotations

from pathlib import Path

from benchmarks.movielens import convert

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n\n22\t1377\t1\t878887116\n"


def test_u_data_lines_become_reviews_in_order(tmp_path: Path) -> None:
    ratings = tmp_path / "u.data"
    ratings.write_text(U_DATA)
    out = tmp_path / "reviews.csv"
    assert convert(ratings, out) == 3
    assert out.read_text().splitlines() == [
        "product_url,reviewer_id,stars",
        "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ml100k00242/,r196,3",
        "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ml100k00302/,r186,3",
        "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ml100k01377/,r22,1",
    ]
