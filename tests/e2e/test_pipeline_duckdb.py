"""The weekly pipeline on DuckDB: first publish, re-run, failing gate, storage outage, a failure at
each publish step, rollback."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from tests.support.fake_supabase_storage import FakeSupabaseStorage
from trainer.backends.duckdb import DuckDBWarehouse
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.release.artifact import load_artifact
from trainer.release.storage import LATEST_NAME, LocalStore

GOOD = ["--epochs", "12", "--embedding-dim", "32", "--quiet"]
BAD = ["--epochs", "1", "--lr", "0.00001", "--embedding-dim", "16", "--quiet"]


@pytest.fixture(scope="module")
def pipeline_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough for the model to beat popularity with a clear interval."""
    path = tmp_path_factory.mktemp("pipeline") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=25_000, seed=5, genres=24))
    return path


def isolate(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """A fresh DuckDB file in `tmp`, no Supabase, no webhook, no job summary."""
    monkeypatch.setenv("DUCKDB_PATH", str(tmp / "warehouse.duckdb"))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def pipeline(tmp: Path, csv: Path, *flags: str) -> int:
    outputs = [
        "--store-root", str(tmp / "store"),
        "--out-model", str(tmp / "out" / "two_tower_latest.safetensors"),
        "--out-video-emb", str(tmp / "out" / "v.parquet"),
        "--out-user-emb", str(tmp / "out" / "u.parquet"),
    ]  # fmt: skip
    return main(["pipeline", str(csv), *outputs, *flags])


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline_csv: Path):
    """Runs `python -m trainer pipeline` in a fresh DuckDB file and local store."""
    isolate(monkeypatch, tmp_path)

    def run(*flags: str) -> int:
        return pipeline(tmp_path, pipeline_csv, *flags)

    run.tmp = tmp_path
    return run


@pytest.fixture(scope="module")
def published_once(tmp_path_factory: pytest.TempPathFactory, pipeline_csv: Path) -> Path:
    """A folder after one passing run (warehouse, store, outputs), built once for the module."""
    tmp = tmp_path_factory.mktemp("published-once")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp)
        assert pipeline(tmp, pipeline_csv, *GOOD) == 0
    return tmp


@pytest.fixture
def after_first(job, published_once: Path):
    """`job`, its folder holding a copy of `published_once`: the second run is the next one."""
    shutil.copytree(published_once, job.tmp, dirs_exist_ok=True)
    return job


def query(tmp: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def published_versions(tmp: Path) -> set[str]:
    rows = query(tmp, "select distinct model_version from video_embeddings")
    return {r[0] for r in rows} | {
        r[0] for r in query(tmp, "select distinct model_version from user_embeddings")
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs(tmp: Path) -> list[tuple]:
    return query(
        tmp,
        "select model_version, gate_passed, published, gate_reason, notes from model_runs "
        "order by started_at, model_version",
    )


def table_vectors(tmp: Path) -> dict[str, dict[str, tuple[str, np.ndarray]]]:
    """{table: {id: (model_version, vector as stored)}} of both embedding tables."""
    tables = {}
    for table, key in (("video_embeddings", "video_id"), ("user_embeddings", "user_id")):
        rows = query(tmp, f"select cast({key} as varchar), model_version, embedding from {table}")
        tables[table] = {r[0]: (r[1], np.asarray(r[2], dtype=np.float32)) for r in rows}
    return tables


def assert_tables_hold(tmp: Path, model_file: Path) -> None:
    """Both embedding tables hold exactly the vectors of the artifact in `model_file`: the same
    ids, its version on every row, its vectors bit for bit (zero-padded to the column)."""
    artifact = load_artifact(model_file)
    tables = table_vectors(tmp)
    for table, ids, matrix in (
        ("video_embeddings", artifact.video_ids, artifact.item_vectors),
        ("user_embeddings", artifact.user_ids, artifact.user_vectors),
    ):
        rows = tables[table]
        assert sorted(rows) == sorted(ids), table
        assert {version for version, _ in rows.values()} == {artifact.version}, table
        held = np.stack([rows[i][1] for i in ids])
        dim = matrix.shape[1]
        np.testing.assert_array_equal(held[:, :dim], matrix.astype(np.float32), err_msg=table)
        assert not held[:, dim:].any(), table


def stored(tmp: Path) -> set[str]:
    return {p.name for p in (tmp / "store").iterdir()}


class Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_first_publish_then_a_passing_rerun_moves_latest(job, monkeypatch, tmp_path) -> None:
    server = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    Webhook.received.clear()

    assert job(*GOOD) == 0
    (first,) = [r[0] for r in runs(job.tmp)]
    store = job.tmp / "store"
    assert published_versions(job.tmp) == {first}
    assert digest(store / "two_tower_latest.safetensors") == digest(store / f"{first}.safetensors")
    unregistered = "select count(*) from interactions where video_id not in (select id from videos)"
    assert query(job.tmp, unregistered) == [(0,)]  # the publish registered every video

    assert job(*GOOD) == 0
    history = runs(job.tmp)
    second = history[-1][0]
    assert second != first and [r[1:3] for r in history] == [(True, True), (True, True)]
    assert "against the champion" in history[-1][3]
    assert published_versions(job.tmp) == {second}  # old vectors gone, never mixed
    assert digest(store / "two_tower_latest.safetensors") == digest(store / f"{second}.safetensors")
    notes = json.loads(history[-1][4])
    assert {"load", "dbt build", "train + evaluate", "publish"} <= set(notes["stages_seconds"])
    server.shutdown()
    assert [m["text"].split()[1:4] for m in Webhook.received] == [
        ["Two-tower", "retrain", "published:"]
    ] * 2
    assert summary.read_text().count("| two_tower |") == 2


def test_a_failing_gate_publishes_nothing(after_first, capsys) -> None:
    job = after_first
    store = job.tmp / "store"
    latest = digest(store / "two_tower_latest.safetensors")
    files = job.tmp / "out"
    local_latest = digest(files / "two_tower_latest.safetensors")
    before = published_versions(job.tmp)
    capsys.readouterr()
    assert job(*BAD) == 1
    out = capsys.readouterr().out
    assert "gate: FAILED" in out and "not published" in out
    assert published_versions(job.tmp) == before
    assert digest(store / "two_tower_latest.safetensors") == latest
    failed = runs(job.tmp)[-1]
    assert failed[1:3] == (False, False) and "popularity" in failed[3]
    assert json.loads(failed[4])["status"] == "rejected"
    # the local files that say what is live are the published model's, not the challenger's
    assert digest(files / "two_tower_latest.safetensors") == local_latest
    assert set(pl.read_parquet(files / "v.parquet")["model_version"]) == before
    assert set(pl.read_parquet(files / "u.parquet")["model_version"]) == before
    assert (files / f"{failed[0]}.safetensors").is_file()  # the challenger is kept, by its name


def test_a_first_run_the_gate_rejects_registers_no_videos(job) -> None:
    """Registration is part of the publish (after the gate), not of dbt build."""
    assert job(*BAD) == 1
    assert runs(job.tmp)[-1][1:3] == (False, False)
    assert query(job.tmp, "select count(*) from videos") == [(0,)]
    marked = query(job.tmp, "select count(*) from video_catalog where register_at_publish")
    assert marked[0][0] > 100


def test_force_needs_a_reason_and_is_recorded(after_first, capsys) -> None:
    job = after_first
    assert job(*BAD, "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert job(*BAD, "--force", "--reason", "hotfix: new catalog") == 0
    forced = runs(job.tmp)[-1]
    notes = json.loads(forced[4])
    assert forced[1:3] == (False, True)
    assert notes["forced"] is True and notes["force_reason"] == "hotfix: new catalog"
    assert published_versions(job.tmp) == {forced[0]}


def test_a_storage_outage_publishes_no_embeddings(job, monkeypatch) -> None:
    with FakeSupabaseStorage(key="test-key") as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "test-key")
        assert job(*GOOD) == 0
        before = published_versions(job.tmp)
        latest = fake.sha256("models", "two_tower_latest.safetensors")
        fake.fail_next(1000, status=503)
        assert job(*GOOD) == 1
        assert published_versions(job.tmp) == before
        assert fake.sha256("models", "two_tower_latest.safetensors") == latest
    failed = runs(job.tmp)[-1]
    assert failed[1:3] == (False, False)
    assert "Supabase Storage" in failed[3] and "503" in failed[3]
    assert "test-key" not in failed[3] + failed[4]


def test_an_upload_failure_after_the_gate_publishes_no_embeddings(after_first, monkeypatch) -> None:
    job = after_first
    before = published_versions(job.tmp)
    store = job.tmp / "store"
    latest = digest(store / "two_tower_latest.safetensors")

    def broken_put(self, local_path, name):  # the store refuses every upload
        raise UserError(f"upload of {name} failed: disk quota exceeded")

    monkeypatch.setattr(LocalStore, "put", broken_put)
    assert job(*GOOD) == 1
    assert published_versions(job.tmp) == before
    assert digest(store / "two_tower_latest.safetensors") == latest
    failed = runs(job.tmp)[-1]
    assert failed[1:3] == (True, False)
    assert "nothing was published" in json.loads(failed[4])["error"]


# The publish order (trainer/jobs/pipeline.py, README "The weekly pipeline and its gate"):
#   1. store <version>.safetensors, 2. replace the embeddings (one transaction), 3. move latest.
# "A failure at the first step publishes nothing; at the second, the tables keep the old model;
# only a failure of the last step leaves new embeddings beside the old `latest`, and the run says
# so." For each step: (second run's files in the store, whose vectors the tables hold, the
# second run's model_runs.published, what its error says, the store calls made).
STEPS = {
    "versioned": (False, "first", False, "publish failed, nothing was published", ["versioned"]),
    "embeddings": (True, "first", False, "publish failed, nothing was published", ["versioned"]),
    "latest": (
        True,
        "second",
        True,
        f"embeddings published but {LATEST_NAME} was not moved",
        ["versioned", "latest"],
    ),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_failure_at_each_publish_step_leaves_what_the_readme_says(
    after_first, monkeypatch, capsys, step
) -> None:
    kept, holds, published, error, calls_expected = STEPS[step]
    tmp = after_first.tmp
    store = tmp / "store"
    (first,) = [r[0] for r in runs(tmp)]
    latest = digest(store / LATEST_NAME)
    assert stored(tmp) == {f"{first}.safetensors", LATEST_NAME}
    assert latest == digest(store / f"{first}.safetensors")
    assert_tables_hold(tmp, store / f"{first}.safetensors")

    calls: list[str] = []
    real_put = LocalStore.put

    def put(self, local_path, name):
        calls.append("latest" if name == LATEST_NAME else "versioned")
        if calls[-1] == step:
            raise UserError(f"injected failure storing {name}")
        real_put(self, local_path, name)

    def refuse(self, *args, **kwargs):
        calls.append("embeddings")
        raise UserError("injected failure writing the embeddings")

    monkeypatch.setattr(LocalStore, "put", put)
    if step == "embeddings":
        monkeypatch.setattr(DuckDBWarehouse, "publish_embeddings", refuse)
    capsys.readouterr()
    assert after_first(*GOOD) == 1
    out = capsys.readouterr().out

    history = runs(tmp)
    assert [r[0] for r in history][0] == first and len(history) == 2
    assert history[0][1:3] == (True, True)  # the first run's row is left as it was
    second, gate_passed, was_published, gate_reason, notes = history[1]
    assert gate_passed is True and "against the champion" in gate_reason  # only publish failed
    assert was_published is published
    recorded = json.loads(notes)["error"]
    assert recorded.startswith(error) and "injected failure" in recorded
    assert f"error: {recorded}" in out
    assert [c for c in calls if c != "embeddings"] == calls_expected
    # the store: the old latest stays; the versioned copy is there unless step 1 failed
    assert digest(store / LATEST_NAME) == latest
    expected = {f"{first}.safetensors", LATEST_NAME} | (
        {f"{second}.safetensors"} if kept else set()
    )
    assert stored(tmp) == expected
    if kept:
        assert digest(store / f"{second}.safetensors") == digest(
            tmp / "out" / f"{second}.safetensors"
        )
    # the tables: the old model's vectors exactly, or (last step) the new one's
    live = first if holds == "first" else second
    assert_tables_hold(tmp, store / f"{live}.safetensors")
    assert published_versions(tmp) == {live}


def test_rollback_restores_an_earlier_version(after_first) -> None:
    tmp = after_first.tmp
    store = tmp / "store"
    before = table_vectors(tmp)  # what the first run published
    parquet = {  # and the first run's parquet files (the second run overwrites them)
        "video_embeddings": pl.read_parquet(tmp / "out" / "v.parquet"),
        "user_embeddings": pl.read_parquet(tmp / "out" / "u.parquet"),
    }
    assert after_first(*GOOD) == 0
    first, second = (r[0] for r in runs(tmp))
    assert published_versions(tmp) == {second}
    rows_before = runs(tmp)
    assert main(["rollback", first, "--store-root", str(store)]) == 0
    assert published_versions(tmp) == {first}
    assert digest(store / LATEST_NAME) == digest(store / f"{first}.safetensors")
    # the tables hold exactly the first version's vectors: its artifact's, and what it published
    assert_tables_hold(tmp, store / f"{first}.safetensors")
    after = table_vectors(tmp)
    for table in before:
        assert sorted(after[table]) == sorted(before[table]), table
        for key, (version, vector) in before[table].items():
            assert after[table][key][0] == version == first
            np.testing.assert_array_equal(after[table][key][1], vector)
    for table, frame in parquet.items():
        key = frame.columns[0]
        assert set(frame["model_version"]) == {first}
        for key_value, vector in zip(frame[key], frame["embedding"], strict=True):
            dim = len(vector)
            np.testing.assert_array_equal(after[table][key_value][1][:dim], vector.to_numpy())
    assert stored(tmp) == {f"{first}.safetensors", f"{second}.safetensors", LATEST_NAME}
    # model_runs: both rows as they were (the first says published, as it is again); the rollback
    # adds no row and rewrites no other run's verdict
    assert runs(tmp) == rows_before
    assert main(["rollback", "two_tower_209901010000", "--store-root", str(store)]) == 2
    assert_tables_hold(tmp, store / f"{first}.safetensors")  # a bad rollback changes nothing


def test_rollback_to_a_stored_version_that_was_never_published_records_it(
    after_first, monkeypatch
) -> None:
    """A run that failed at the embeddings step left its versioned artifact: rolling back to it
    publishes its vectors, makes it latest, and its model_runs row then says published."""
    tmp = after_first.tmp
    store = tmp / "store"

    def refuse(self, *args, **kwargs):
        raise UserError("injected failure writing the embeddings")

    with monkeypatch.context() as patch:
        patch.setattr(DuckDBWarehouse, "publish_embeddings", refuse)
        assert after_first(*GOOD) == 1
    first, second = (r[0] for r in runs(tmp))
    assert [r[1:3] for r in runs(tmp)] == [(True, True), (True, False)]
    assert main(["rollback", second, "--store-root", str(store)]) == 0
    assert_tables_hold(tmp, store / f"{second}.safetensors")
    assert digest(store / LATEST_NAME) == digest(store / f"{second}.safetensors")
    history = runs(tmp)
    assert [r[1:3] for r in history] == [(True, True), (True, True)]
    assert "nothing was published" in json.loads(history[1][4])["error"]  # the run's own story


def test_rollback_refuses_a_file_that_is_not_the_version_asked_for(after_first) -> None:
    """A versioned object replaced by another version's file, or changed by one byte, is
    refused before anything changes (the sha256 its run recorded, the version inside it)."""
    tmp = after_first.tmp
    store = tmp / "store"
    assert after_first(*GOOD) == 0
    first, second = (r[0] for r in runs(tmp))
    recorded = json.loads(runs(tmp)[0][4])["artifact_sha256"]
    assert recorded == digest(store / f"{first}.safetensors")
    original = (store / f"{first}.safetensors").read_bytes()
    (store / f"{first}.safetensors").write_bytes((store / f"{second}.safetensors").read_bytes())
    rows = runs(tmp)
    assert main(["rollback", first, "--store-root", str(store)]) == 2
    flipped = bytearray(original)
    flipped[-5] ^= 0x01
    (store / f"{first}.safetensors").write_bytes(bytes(flipped))
    assert main(["rollback", first, "--store-root", str(store)]) == 2
    # nothing moved: the second version is live and latest, the run records are as they were
    assert published_versions(tmp) == {second}
    assert digest(store / LATEST_NAME) == digest(store / f"{second}.safetensors")
    assert runs(tmp) == rows
    # without a recorded sha256 (a run from before it was kept), the inner version still counts
    with duckdb.connect(str(tmp / "warehouse.duckdb")) as con:
        con.execute("update model_runs set notes = null where model_version = ?", [first])
    (store / f"{first}.safetensors").write_bytes((store / f"{second}.safetensors").read_bytes())
    assert main(["rollback", first, "--store-root", str(store)]) == 2
    (store / f"{first}.safetensors").write_bytes(original)
    assert main(["rollback", first, "--store-root", str(store)]) == 0
    assert published_versions(tmp) == {first}


def test_the_run_is_recorded_as_publishing_before_the_publish_commits(
    after_first, monkeypatch
) -> None:
    """A run killed inside the publish leaves a model_runs row that says it was publishing."""
    tmp = after_first.tmp
    seen = []
    real = DuckDBWarehouse.publish_embeddings

    def spy(self, *args, **kwargs):
        rows = self.read("select model_version, published, notes from model_runs").to_dicts()
        seen.append({r["model_version"]: r for r in rows})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DuckDBWarehouse, "publish_embeddings", spy)
    assert after_first(*GOOD) == 0
    first, second = (r[0] for r in runs(tmp))
    (during,) = seen
    pending = during[second]
    assert not pending["published"]
    notes = pending["notes"]
    notes = json.loads(notes) if isinstance(notes, str) else notes
    assert notes["status"] == "publishing" and notes["artifact_sha256"]
    final = json.loads(runs(tmp)[-1][4])
    assert final["status"] == "published" and final["artifact_sha256"] == notes["artifact_sha256"]


def test_a_local_latest_file_that_cannot_be_written_still_leaves_a_true_record(
    after_first, monkeypatch, capsys
) -> None:
    """The embeddings are live once the publish commits: a failure writing the local latest
    files afterwards is an error the run record carries (exit 1), not a row left at
    "publishing" for a model that serves."""
    tmp = after_first.tmp

    def full_disk(artifact, outputs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("trainer.jobs.pipeline.write_latest", full_disk)
    capsys.readouterr()
    assert after_first(*GOOD) == 1
    first, second = (r[0] for r in runs(tmp))
    _, gate_passed, published, _, notes = runs(tmp)[-1]
    notes = json.loads(notes)
    # as when `latest` cannot be moved: published (the vectors serve), the run failed, and why
    assert gate_passed and published and notes["status"] == "failed"
    assert notes["error"].startswith("embeddings published but the local latest files were not")
    assert "No space left on device" in capsys.readouterr().out
    assert published_versions(tmp) == {second}
    finished = query(tmp, f"select finished_at from model_runs where model_version = '{second}'")
    assert finished[0][0] is not None
