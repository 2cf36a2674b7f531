"""The weekly pipeline end to end on a real Postgres + pgvector: the command the workflow runs,
and a rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.support.browser import look, screenshot_dir
from tests.support.pg_server import PgServer
from tests.support.warehouses import output_flags
from trainer.cli import main
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.release.artifact import load_artifact

FLAGS = ["--target", "postgres", "--epochs", "12", "--embedding-dim", "32", "--quiet"]


@pytest.fixture(scope="module")
def db(pg_env: PgServer, tmp_path_factory: pytest.TempPathFactory):
    pg_env.database("pipeline")
    csv = tmp_path_factory.mktemp("pgpipe") / "reviews.csv"
    write_synthetic_csv(csv, SynthConfig(reviews=25_000, seed=5, genres=24))
    return pg_env, csv, tmp_path_factory.mktemp("pgpipe-out")


def assert_tables_hold(con: psycopg.Connection, model_file: Path) -> None:
    """Both published tables hold exactly the artifact's vectors (zero-padded to the column)."""
    artifact = load_artifact(model_file)
    for table, key, ids, matrix in (
        ("video_embeddings", "video_id", artifact.video_ids, artifact.item_vectors),
        ("user_embeddings", "user_id", artifact.user_ids, artifact.user_vectors),
    ):
        rows = {
            r[0]: (r[1], np.asarray(r[2], dtype=np.float32))
            for r in con.execute(
                f"select {key}::text, model_version, embedding::real[] from public.{table}"
            ).fetchall()
        }
        assert sorted(rows) == sorted(ids), table
        assert {version for version, _ in rows.values()} == {artifact.version}, table
        held = np.stack([rows[i][1] for i in ids])
        dim = matrix.shape[1]
        np.testing.assert_array_equal(held[:, :dim], matrix.astype(np.float32), err_msg=table)
        assert not held[:, dim:].any(), table


def pipeline(csv: Path, out: Path, *extra: str) -> int:
    return main(["pipeline", str(csv), *FLAGS, *output_flags(out), *extra])


def test_two_weekly_runs_publish_then_replace_and_a_rollback_restores(
    db, monkeypatch, capsys
) -> None:
    server, csv, out = db
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    # the pipeline never migrates (nor does its load): a fresh database is named, then migrated
    assert pipeline(csv, out) == 2
    refused = capsys.readouterr().err
    assert "migrate --target postgres" in refused and "videos" in refused
    with server.connect("pipeline") as con:
        assert con.execute("select to_regclass('raw.reviews')").fetchone() == (None,)
    assert main(["migrate", "--target", "postgres"]) == 0
    assert pipeline(csv, out) == 0
    assert pipeline(csv, out) == 0
    printed = capsys.readouterr().out
    assert printed.count("gate: PASSED") == 2 and "against the champion" in printed
    with server.connect("pipeline") as con:
        runs = con.execute(
            "select model_version, gate_passed, published from public.model_runs "
            "order by started_at"
        ).fetchall()
        versions = con.execute(
            "select distinct model_version from public.video_embeddings "
            "union select distinct model_version from public.user_embeddings"
        ).fetchall()
        indexes = con.execute(
            "select indexdef from pg_indexes where tablename like 'video_embeddings_%' "
            "and indexdef like '%ivfflat%'"
        ).fetchall()
        reviewed = {
            str(r[0])
            for r in con.execute(
                "select video_id from recsys.interactions where user_id = 'rv0000002'"
            ).fetchall()
        }
        unregistered = con.execute(
            "select count(*) from recsys.interactions as i "
            "where not exists (select 1 from public.videos as v where v.id = i.video_id)"
        ).fetchone()
    assert unregistered == (0,)  # the publish registered every video
    # each weekly run wrote its report beside its model files; the second shows both runs
    assert (out / f"report_{runs[0][0]}.html").exists()
    report = out / f"report_{runs[1][0]}.html"
    seen = look(report.as_uri(), screenshot_dir() / "report_postgres_weekly.png")
    assert seen.errors == [] and seen.broken_images == [] and seen.images == 8
    assert runs[0][0] in seen.text and "Gate: passed" in seen.text
    assert len([u for u in seen.links if "dmm.co.jp" in u]) >= 30  # served by recommend_videos
    assert [r[1:] for r in runs] == [(True, True), (True, True)]
    assert versions == [(runs[-1][0],)]  # only the new version's vectors remain
    assert len(indexes) == 1  # built for the new embedding space (its slot) only
    assert main(["recommend", "--target", "postgres", "--user", "rv0000002"]) == 0
    listed = [line.split()[2] for line in capsys.readouterr().out.splitlines()[3:]]
    assert len(listed) == 10 and not reviewed.intersection(listed)

    # rollback to the first version: latest, both tables and the serving functions follow
    first, second = runs[0][0], runs[1][0]
    store = out / "store"
    rollback = ["rollback", first, "--target", "postgres", "--store-root", str(store)]
    assert main(rollback) == 0
    assert (store / "two_tower_latest.safetensors").read_bytes() == (
        store / f"{first}.safetensors"
    ).read_bytes()
    with server.connect("pipeline") as con:
        assert_tables_hold(con, store / f"{first}.safetensors")
        after = con.execute(
            "select model_version, gate_passed, published from public.model_runs "
            "order by started_at"
        ).fetchall()
    assert after == runs  # both were published runs; the rollback rewrites no other verdict
    assert {first, second} == {r[0] for r in after}
    capsys.readouterr()
    assert main(["recommend", "--target", "postgres", "--user", "rv0000002"]) == 0
    listed = [line.split()[2] for line in capsys.readouterr().out.splitlines()[3:]]
    assert len(listed) == 10 and not reviewed.intersection(listed)
