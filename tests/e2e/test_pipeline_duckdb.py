"""The weekly pipeline on DuckDB: first publish, re-run, failing gate, storage outage, rollback."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from tests.support.fake_supabase_storage import FakeSupabaseStorage
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.release.storage import LocalStore

GOOD = ["--epochs", "12", "--embedding-dim", "32", "--quiet"]
BAD = ["--epochs", "1", "--lr", "0.00001", "--embedding-dim", "16", "--quiet"]


@pytest.fixture(scope="module")
def pipeline_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough for the model to beat popularity with a clear interval."""
    path = tmp_path_factory.mktemp("pipeline") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=25_000, seed=5, genres=24))
    return path


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline_csv: Path):
    """Runs `python -m trainer pipeline` in a fresh DuckDB file and local store."""
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def run(*flags: str) -> int:
        outputs = [
            "--store-root", str(tmp_path / "store"),
            "--out-model", str(tmp_path / "out" / "two_tower_latest.safetensors"),
            "--out-video-emb", str(tmp_path / "out" / "v.parquet"),
            "--out-user-emb", str(tmp_path / "out" / "u.parquet"),
        ]  # fmt: skip
        return main(["pipeline", str(pipeline_csv), *outputs, *flags])

    run.tmp = tmp_path
    return run


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


def test_a_failing_gate_publishes_nothing(job, capsys) -> None:
    assert job(*GOOD) == 0
    store = job.tmp / "store"
    latest = digest(store / "two_tower_latest.safetensors")
    before = published_versions(job.tmp)
    capsys.readouterr()
    assert job(*BAD) == 1
    out = capsys.readouterr().out
    assert "gate: FAILED" in out and "not published" in out
    assert published_versions(job.tmp) == before
    assert digest(store / "two_tower_latest.safetensors") == latest
    failed = runs(job.tmp)[-1]
    assert failed[1:3] == (False, False) and "popularity" in failed[3]


def test_force_needs_a_reason_and_is_recorded(job, capsys) -> None:
    assert job(*GOOD) == 0
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


def test_an_upload_failure_after_the_gate_publishes_no_embeddings(job, monkeypatch) -> None:
    assert job(*GOOD) == 0
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


def test_rollback_restores_an_earlier_version(job) -> None:
    assert job(*GOOD) == 0
    assert job(*GOOD) == 0
    first, second = (r[0] for r in runs(job.tmp))
    assert published_versions(job.tmp) == {second}
    store = job.tmp / "store"
    assert main(["rollback", first, "--store-root", str(store)]) == 0
    assert published_versions(job.tmp) == {first}
    assert digest(store / "two_tower_latest.safetensors") == digest(store / f"{first}.safetensors")
    assert main(["rollback", "two_tower_209901010000", "--store-root", str(store)]) == 2
