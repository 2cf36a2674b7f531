"""The app's likes as training data, end to end on both engines: the app's likes table named by
APP_LIKES_TABLE, the weekly pipeline, and the app user then served from their own vector.

The key an app user gets in the marts (dbt's app_user_key macro) and the key Postgres computes
from the JWT (public.my_user_id()) must be the same string, with reviewer ids anonymized too:
here the one proves the other, through a published vector that recommend_for_me finds.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from pathlib import Path

import duckdb
import pytest

from tests.support.pg_server import PgServer
from tests.support.warehouses import output_flags
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.cli import main
from trainer.ingest.synth import SynthConfig, write_synthetic_csv

FLAGS = ["--epochs", "3", "--embedding-dim", "16", "--quiet", "--force", "--reason", "test"]
APP_USER = "5b0f7c1e-3d2a-4c8e-9f10-2a3b4c5d6e7f"
KEY = f"app:{APP_USER}"
LIKES_SQL = "create table {table} (liker uuid, liked uuid, liked_at timestamp)"


def reviews_csv(tmp: Path) -> tuple[Path, list[str]]:
    """A synthetic scrape with one line whose reviewer id squats the app user's key; and four
    of its product URLs, for the app to register and like."""
    path = tmp / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=8_000, seed=3, dirt=0))
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    urls = list(dict.fromkeys(r[0] for r in rows))[:4]
    with path.open("a", newline="") as handle:
        csv.writer(handle).writerow([urls[3], KEY, "5"])
    return path, urls


def like_rows(video_ids: list[str]) -> list[tuple[str | None, str]]:
    """Three kept likes, one duplicate, one of a video the app does not have, one without a
    user: six rows, three interactions, three rejects."""
    return [
        (APP_USER, video_ids[0]),
        (APP_USER, video_ids[1]),
        (APP_USER, video_ids[2]),
        (APP_USER, video_ids[1]),
        (APP_USER, str(uuid.uuid4())),
        (None, video_ids[0]),
    ]


def assert_the_likes_became_training_data(read) -> None:
    summary = dict(read("select metric, value from quality_summary"))
    assert (summary["app_likes"], summary["app_likes_rejected"]) == (6, 3)
    reasons = sorted(r for (r,) in read("select reject_reason from int_app_likes") if r)
    assert reasons == ["duplicate", "missing_app_user_id", "unknown_video"]
    liked = read(
        "select user_id, source, stars, label, weight from interactions "
        "where source = 'app_like' order by video_id"
    )
    assert liked == [(KEY, "app_like", None, True, 1.0)] * 3
    splits = read(f"select split from interaction_splits where user_id = '{KEY}'")
    assert sorted(s for (s,) in splits) == ["train", "train", "valid"]


def test_duckdb_likes_train_the_app_user_and_a_reviewer_cannot_take_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews, urls = reviews_csv(tmp_path)
    db = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    monkeypatch.setenv("APP_LIKES_TABLE", "likes_of_users")
    monkeypatch.setenv("APP_LIKES_USER_COLUMN", "liker")
    monkeypatch.setenv("APP_LIKES_VIDEO_COLUMN", "liked")
    ids = [str(uuid.uuid4()) for _ in urls]
    with DuckDBWarehouse(db) as wh:
        wh.ensure_app_schema()
        wh.con.executemany(
            "insert into videos (id, product_url) values (?, ?)", list(zip(ids, urls, strict=True))
        )
        wh.execute(LIKES_SQL.format(table="likes_of_users"))
        wh.con.executemany("insert into likes_of_users values (?, ?, now())", like_rows(ids))
    assert main(["pipeline", str(reviews), *FLAGS, *output_flags(tmp_path)]) == 0

    con = duckdb.connect(str(db), read_only=True)
    read = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert_the_likes_became_training_data(read)
    # the squatting review line is a recorded reject, not a second author of the app user's key
    assert read(
        f"select count(*) from review_rejects where reviewer_id = '{KEY}' "
        "and reason = 'reserved_reviewer_id'"
    ) == [(1,)]
    assert read(f"select count(*) from user_embeddings where user_id = '{KEY}'") == [(1,)]
    con.close()
    with DuckDBWarehouse(db) as wh:
        offered = {r.video_id for r in wh.recommend(KEY, 5)}
    assert len(offered) == 5 and not offered & set(ids[:3])  # the liked videos are not offered


@pytest.mark.postgres
def test_postgres_likes_publish_a_vector_recommend_for_me_finds_with_ids_anonymized(
    pg_env: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews, urls = reviews_csv(tmp_path)
    pg_env.database("app_likes")
    monkeypatch.setenv("REVIEWER_ID_HMAC_KEY", "k" * 32)
    monkeypatch.setenv("APP_LIKES_TABLE", "app_likes")
    monkeypatch.setenv("APP_LIKES_USER_COLUMN", "liker")
    monkeypatch.setenv("APP_LIKES_VIDEO_COLUMN", "liked")
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["migrate", "--target", "postgres"]) == 0
    ids = [str(uuid.uuid4()) for _ in urls]
    with pg_env.connect("app_likes") as con, con.cursor() as cur:
        cur.executemany(
            "insert into public.videos (id, product_url) values (%s, %s)",
            list(zip(ids, urls, strict=True)),
        )
        cur.execute(LIKES_SQL.format(table="public.app_likes"))
        cur.executemany("insert into public.app_likes values (%s, %s, now())", like_rows(ids))
    flags = ["--target", "postgres", "--anonymize", *FLAGS, *output_flags(tmp_path)]
    assert main(["pipeline", str(reviews), *flags]) == 0

    with pg_env.connect("app_likes") as con:
        read = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        con.execute("set search_path = recsys, public")  # the marts (PGSCHEMA), the app
        assert_the_likes_became_training_data(read)
        reviewers = [
            u for (u,) in read("select distinct user_id from interactions where source = 'review'")
        ]
        assert reviewers and all(re.fullmatch("[0-9a-f]{32}", u) for u in reviewers)  # hashed
        (version,) = read("select model_version from public.user_embeddings limit 1")[0]
        served = read(f"select video_id from public.recommend_videos('{KEY}', 5)")

        con.execute("set role authenticated")
        claims = json.dumps({"sub": APP_USER, "role": "authenticated"})
        con.execute("select set_config('request.jwt.claims', %s, false)", (claims,))
        assert read("select public.my_user_id()") == [(KEY,)]
        assert read("select public.my_model_version()") == [(version,)]
        mine = read("select video_id from public.recommend_for_me(5)")
        assert mine == served and len(mine) == 5
        assert not {str(v) for (v,) in mine} & set(ids[:3])  # the liked videos are not offered
