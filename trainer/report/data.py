"""What a run report shows, read from the warehouse: the run's model_runs row, every run before
it, the marts the model was trained on, and a few users' recommendations beside their reviews.

Marts and runs may live in two databases (the snapshot flow trains on a work copy and records the
run in production), so both are passed; they are the same warehouse otherwise. Every query is
plain SQL that both engines run (Warehouse.read takes no values: the only value, a version, goes
through the typed run_row).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from trainer.backends import Recommendation, Warehouse
from trainer.errors import UserError

SAMPLE_USERS = 3  # users whose recommendations the report lists beside what they reviewed


@dataclass
class SampleUser:
    user_id: str
    reviewed: list[tuple[str, int]]  # (product_url, stars), best first
    recommended: list[Recommendation]


@dataclass
class ReportData:
    run: dict[str, Any]  # the model_runs row, JSON columns decoded
    history: list[dict[str, Any]]  # every model_runs row up to this one, oldest first
    stars: pl.DataFrame  # stars, reviews
    per_reviewer: pl.DataFrame  # reviews, reviewers (how many reviewers wrote that many)
    per_video: pl.DataFrame  # reviews, videos
    rejects: pl.DataFrame  # stage, reason, lines
    catalog: dict[str, int]  # registered / new (registered by a publish) / never registered
    samples: list[SampleUser] = field(default_factory=list)
    sample_note: str = ""


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: json.loads(v) if k in ("config", "metrics", "notes") and isinstance(v, str) else v
        for k, v in row.items()
    }


def latest_version(runs: Warehouse) -> str:
    if not runs.table_exists("model_runs"):
        raise UserError("no model_runs table: train a model first")
    found = runs.read("select model_version from model_runs order by started_at desc limit 1")
    if found.is_empty():
        raise UserError("model_runs is empty: train a model first")
    return found.item(0, 0)


def _history(runs: Warehouse, run: dict[str, Any]) -> list[dict[str, Any]]:
    frame = runs.read(
        "select model_version, started_at, gate_passed, published, metrics, notes "
        "from model_runs order by started_at, model_version"
    )
    rows = [_decoded(r) for r in frame.iter_rows(named=True)]
    return [r for r in rows if r["started_at"] <= run["started_at"]]


def _catalog(marts: Warehouse) -> dict[str, int]:
    frame = marts.read(
        "select case when is_registered then 'registered in videos' "
        "when register_at_publish then 'new, registered at publish' "
        "else 'new, not registered (ingest_videos off)' end as kind, count(*) as videos "
        "from video_catalog group by 1"
    )
    return dict(frame.iter_rows())


def _samples(marts: Warehouse, runs: Warehouse, version: str) -> tuple[list[SampleUser], str]:
    served = runs.read("select distinct model_version from video_embeddings")
    if served.to_series().to_list() != [version]:
        return [], f"the serving tables do not hold {version} (not published): no sample"
    users = marts.read(
        "select user_id from interaction_splits where split = 'valid' "
        f"group by user_id order by count(*) desc, user_id limit {SAMPLE_USERS}"
    )["user_id"].to_list()
    if not users:
        return [], "no user has a valid item: no sample"
    listed = ", ".join("'" + u.replace("'", "''") + "'" for u in users)
    reviewed = marts.read(
        "select i.user_id, c.product_url, i.stars from interactions as i "
        "join video_catalog as c on c.video_id = i.video_id "
        f"where i.user_id in ({listed}) order by i.user_id, i.stars desc, c.product_url"
    )
    samples = []
    for user in users:
        mine = reviewed.filter(pl.col("user_id") == user)
        samples.append(
            SampleUser(
                user,
                list(zip(mine["product_url"], mine["stars"], strict=True)),
                runs.recommend(user, 10),
            )
        )
    return samples, ""


def collect(marts: Warehouse, runs: Warehouse, version: str | None = None) -> ReportData:
    """Everything one report shows; `version` defaults to the latest run."""
    version = version or latest_version(runs)
    run = runs.run_row(version)
    if run is None:
        raise UserError(f"no run {version!r} in model_runs")
    counts = (
        "select reviews, count(*) as {what} from (select {key}, count(*) as reviews "
        "from interactions group by {key}) as per_key group by reviews order by reviews"
    )
    samples, note = _samples(marts, runs, version)
    return ReportData(
        run=_decoded(run),
        history=_history(runs, run),
        stars=marts.read(
            "select stars, count(*) as reviews from interactions where stars is not null "
            "group by stars order by stars"
        ),
        per_reviewer=marts.read(counts.format(what="reviewers", key="user_id")),
        per_video=marts.read(counts.format(what="videos", key="video_id")),
        rejects=marts.read(
            "select stage, reason, lines from quality_rejects_by_reason order by lines desc"
        ),
        catalog=_catalog(marts),
        samples=samples,
        sample_note=note,
    )
