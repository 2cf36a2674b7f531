"""A realistic, seeded review scrape for demos, tests and benchmarks.

Shape: users and videos have latent tastes (genres); video popularity and user activity follow
heavy tails, so most videos have a handful of reviews and most reviewers write a few; stars follow
the user's affinity for the video's genre plus user and video biases and noise. Then the dirt of a
real scrape: URL spellings (http, no www, no trailing slash, tracking query strings, fragments,
upper-case cid), exact and conflicting duplicates, blank and invalid fields, ragged and
undecodable lines. Everything is vectorised (numpy/polars), so 10M reviews take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from trainer.files import atomic_path

BASE_URL = "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid="


# Reviews per user and per video of each shape: "longtail" is what DMM data looks like (far more
# videos than reviews per video, most reviewers with a few reviews); "dense" is a MovieLens-like
# set with heavy reviewers (1M reviews: ~5.9k users, ~3.4k videos, the heaviest with ~1k).
SHAPES = {"longtail": (8.0, 4.0), "dense": (170.0, 290.0)}


@dataclass(frozen=True)
class SynthConfig:
    reviews: int = 50_000
    seed: int = 0
    shape: str = "longtail"
    reviews_per_user: float | None = None  # default: the shape's
    reviews_per_video: float | None = None
    genres: int | None = None  # default: grows with the catalog
    dirt: float = 1.0  # multiplies every dirt rate; 0 writes a clean file


# Share of rows (before `dirt` scaling) that receive each kind of dirt.
URL_VARIANT_RATE = 0.20
EXACT_DUPLICATE_RATE = 0.010
CONFLICT_DUPLICATE_RATE = 0.005
FIELD_DIRT_RATE = 0.015
BAD_LINE_RATE = 0.001


def _sizes(cfg: SynthConfig) -> tuple[int, int, int]:
    if cfg.shape not in SHAPES:
        raise ValueError(f"unknown shape {cfg.shape!r}: one of {', '.join(SHAPES)}")
    per_user, per_video = SHAPES[cfg.shape]
    users = max(20, int(cfg.reviews / (cfg.reviews_per_user or per_user)))
    videos = max(20, int(cfg.reviews / (cfg.reviews_per_video or per_video)))
    genres = cfg.genres or int(np.clip(videos // 500, 8, 64))
    return users, videos, genres


def _clean_reviews(cfg: SynthConfig, rng: np.random.Generator) -> pl.DataFrame:
    """user index, video index, stars for cfg.reviews draws from the latent model."""
    n_users, n_videos, n_genres = _sizes(cfg)
    taste = rng.dirichlet(np.full(n_genres, 0.1), size=n_users)
    activity = rng.lognormal(0.0, 1.1, size=n_users)
    user_of_review = rng.choice(n_users, size=cfg.reviews, p=activity / activity.sum())

    video_genre = rng.integers(0, n_genres, size=n_videos)
    popularity = rng.pareto(1.2, size=n_videos) + 0.05
    order = np.argsort(video_genre, kind="stable")  # videos grouped by genre
    cum = np.cumsum(popularity[order])
    genre_end = np.searchsorted(video_genre[order], np.arange(n_genres), side="right")
    genre_start = np.concatenate([[0], genre_end[:-1]])
    lo = np.where(genre_start > 0, cum[np.maximum(genre_start - 1, 0)], 0.0)
    hi = cum[np.maximum(genre_end - 1, 0)]

    genre = np.empty(cfg.reviews, dtype=np.int64)
    for start in range(0, cfg.reviews, 500_000):  # bounded memory for 10M rows
        stop = min(start + 500_000, cfg.reviews)
        cdf = np.cumsum(taste[user_of_review[start:stop]], axis=1)
        genre[start:stop] = (cdf < rng.random((stop - start, 1))).sum(axis=1)
    explore = rng.random(cfg.reviews) < 0.05  # off-taste views, mostly rated low
    genre[explore] = rng.integers(0, n_genres, size=int(explore.sum()))
    genre = np.minimum(genre, n_genres - 1)
    empty = hi <= lo
    genre = np.where(empty[genre], video_genre[order[0]], genre)
    point = lo[genre] + rng.random(cfg.reviews) * (hi[genre] - lo[genre])
    video_of_review = order[np.minimum(np.searchsorted(cum, point), n_videos - 1)]

    affinity = np.log(n_genres * taste[user_of_review, video_genre[video_of_review]] + 1e-3)
    user_bias = rng.normal(0.0, 0.4, size=n_users)[user_of_review]
    video_bias = rng.normal(0.0, 0.5, size=n_videos)[video_of_review]
    noise = rng.normal(0.0, 0.7, size=cfg.reviews)
    stars = np.clip(np.rint(3.4 + 0.55 * affinity + user_bias + video_bias + noise), 1, 5)
    return pl.DataFrame(
        {
            "user": user_of_review.astype(np.int64),
            "video": video_of_review.astype(np.int64),
            "stars": stars.astype(np.int64),
        }
    )


def _with_duplicates(df: pl.DataFrame, cfg: SynthConfig, rng: np.random.Generator) -> pl.DataFrame:
    n = df.height
    exact = df.sample(int(n * EXACT_DUPLICATE_RATE * cfg.dirt), seed=int(rng.integers(2**31)))
    conflict = df.sample(int(n * CONFLICT_DUPLICATE_RATE * cfg.dirt), seed=int(rng.integers(2**31)))
    shift = rng.integers(1, 5, size=conflict.height)
    conflict = conflict.with_columns(((pl.col("stars") - 1 + shift) % 5 + 1).alias("stars"))
    both = pl.concat([df, exact, conflict])
    return both[rng.permutation(both.height)]


def _as_text(df: pl.DataFrame, cfg: SynthConfig, rng: np.random.Generator) -> pl.DataFrame:
    """The three CSV columns as strings, with URL spellings and field-level dirt."""
    n = df.height
    cid = pl.format("{}{}", pl.lit("ssn"), pl.col("video").cast(pl.String).str.zfill(6))
    variant = rng.integers(0, 6, size=n)
    variant[rng.random(n) >= URL_VARIANT_RATE * cfg.dirt] = -1
    dirt = rng.integers(0, 8, size=n)
    dirt[rng.random(n) >= FIELD_DIRT_RATE * cfg.dirt] = -1
    v = pl.col("variant")
    d = pl.col("dirt")
    url = (
        pl.when(v == 0)
        .then(pl.format("http://www.dmm.co.jp/digital/videoa/-/detail/=/cid={}/", cid))
        .when(v == 1)
        .then(pl.format("https://dmm.co.jp/digital/videoa/-/detail/=/cid={}/", cid))
        .when(v == 2)
        .then(pl.format("{}{}", pl.lit(BASE_URL), cid))
        .when(v == 3)
        .then(pl.format("{}{}/?i3_ref=list&i3_ord={}", pl.lit(BASE_URL), cid, pl.col("user") % 30))
        .when(v == 4)
        .then(pl.format("{}{}/#review", pl.lit(BASE_URL), cid))
        .when(v == 5)
        .then(pl.format("{}{}/", pl.lit(BASE_URL), cid.str.to_uppercase()))
        .otherwise(pl.format("{}{}/", pl.lit(BASE_URL), cid))
    )
    reviewer = pl.format("rv{}", pl.col("user").cast(pl.String).str.zfill(7))
    stars = pl.col("stars").cast(pl.String)
    return df.with_columns(variant=pl.Series(variant), dirt=pl.Series(dirt)).select(
        product_url=pl.when(d == 0)
        .then(pl.lit(""))
        .when(d == 1)
        .then(pl.lit("N/A"))
        .otherwise(url),
        reviewer_id=pl.when(d == 2)
        .then(pl.lit("  "))
        .when(d == 3)
        .then(pl.format("{}, {}", reviewer, pl.lit("jp")))  # quoted comma
        .otherwise(reviewer),
        stars=pl.when(d == 4)
        .then(pl.lit("6"))
        .when(d == 5)
        .then(pl.lit("3.5"))
        .when(d == 6)
        .then(pl.lit("★★★★"))
        .when(d == 7)
        .then(pl.format("{}.0", stars))
        .otherwise(stars),
    )


def _bad_lines(count: int) -> list[bytes]:
    """Lines no CSV parser can use, cycling through the kinds so each appears."""
    kinds = [
        b"https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ssn000001/,rv0000001,5,extra\n",
        b"https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ssn000002/,rv0000002\n",
        "https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ssn000003/,レビュアー,4\n".encode(
            "shift_jis"
        ),
        b'https://www.dmm.co.jp/digital/videoa/-/detail/=/cid=ssn000004/,"rv00"04",3\n',
        b"\n",
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


def write_synthetic_csv(path: Path, cfg: SynthConfig) -> dict[str, int]:
    """Write the scrape to `path`; returns counts of what went in (for tests and logs)."""
    rng = np.random.default_rng(cfg.seed)
    text = _as_text(_with_duplicates(_clean_reviews(cfg, rng), cfg, rng), cfg, rng)
    bad = _bad_lines(int(text.height * BAD_LINE_RATE * cfg.dirt))
    with atomic_path(path) as tmp, tmp.open("wb") as out:
        out.write(b"product_url,reviewer_id,stars\n")
        chunk = max(1, text.height // (len(bad) + 1))
        for i, start in enumerate(range(0, text.height, chunk)):
            text.slice(start, chunk).write_csv(out, include_header=False)
            if i < len(bad):
                out.write(bad[i])
    return {"rows": text.height, "bad_lines": len(bad), "lines": text.height + len(bad)}
