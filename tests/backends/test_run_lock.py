"""One run at a time per target, on both engines (trainer/backends/run_lock.py): a second run is
refused at once, told who holds the lock, and exits 2; the lock goes with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.backends.profiles import load_target
from trainer.backends.run_lock import run_lock
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.synth import SynthConfig, write_synthetic_csv

HOLD = """
import sys
from trainer.backends.profiles import load_target
from trainer.backends.run_lock import run_lock
with run_lock(load_target(sys.argv[1]), "holder for the test"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def hold(target: str) -> subprocess.Popen:
    """A child process that holds `target`'s run lock until its stdin is closed."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, target],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def release(child: subprocess.Popen) -> None:
    assert child.stdin is not None
    child.stdin.close()
    assert child.wait(timeout=30) == 0


@pytest.fixture
def duckdb_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    return path


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lock") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=3_000, seed=2))
    return path


class LockContract:
    target = ""

    def test_a_second_run_is_refused_and_told_who_holds_the_lock(
        self, reviews_csv: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        child = hold(self.target)
        try:
            refused = pytest.raises(UserError, match="another run holds the run lock")
            with refused as caught, run_lock(load_target(self.target)):
                pass
            assert "holder for the test" in str(caught.value)
            for argv in (
                ["load", str(reviews_csv)],
                ["train", "--epochs", "1"],
                ["pipeline", str(reviews_csv)],
                ["rollback", "two_tower_202601010000"],
            ):
                assert main([*argv, "--target", self.target]) == 2, argv
                err = capsys.readouterr().err
                assert "another run holds the run lock" in err and "Traceback" not in err
                assert "holder for the test" in err, argv
        finally:
            release(child)
        with run_lock(load_target(self.target)):  # released with its holder
            pass

    def test_a_killed_holder_leaves_no_stale_lock(self) -> None:
        child = hold(self.target)
        child.kill()
        child.wait(timeout=30)
        with run_lock(load_target(self.target)):
            pass

    def test_two_loads_started_together_one_runs_the_other_is_refused(
        self, reviews_csv: Path, tmp_path: Path
    ) -> None:
        big = tmp_path / "big.csv"
        write_synthetic_csv(big, SynthConfig(reviews=150_000, seed=3))
        argv = [sys.executable, "-m", "trainer", "load", str(big), "--target", self.target]
        runs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        refused = next(err for code, err in results if code == 2)
        assert "another run holds the run lock" in refused and "Traceback" not in refused


class TestDuckDB(LockContract):
    target = "duckdb"

    @pytest.fixture(autouse=True)
    def _file(self, duckdb_file: Path) -> None:
        self.path = duckdb_file


class TestPostgres(LockContract):
    target = "postgres"

    @pytest.fixture(autouse=True)
    def _server(self, pg_env) -> None:
        self.server = pg_env

    def test_behind_a_transaction_pooler_the_lock_holds_for_the_run(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # PG_POOLER=1: a session lock would not survive between pooled transactions, so the
        # lock is a transaction lock in a transaction held open for the run.
        monkeypatch.setenv("PG_POOLER", "1")
        child = hold(self.target)
        try:
            refused = pytest.raises(UserError, match="holder for the test")
            with refused, run_lock(load_target(self.target)):
                pass
        finally:
            release(child)
        with run_lock(load_target(self.target)):
            pass


WRITER = """
import sys, duckdb
from trainer.backends.profiles import load_target
from trainer.backends.run_lock import run_lock
with run_lock(load_target("duckdb"), "writer for the test"):
    con = duckdb.connect(sys.argv[1])
    con.execute("create table if not exists t as select 1 as x")
    print("held", flush=True)
    sys.stdin.read()
"""


def test_duckdb_readers_during_a_run_get_a_clear_error_naming_it(
    duckdb_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DuckDB lets one process write a file at a time: a `sql` or `recommend` while a run writes
    # is refused by the engine; the user sees that, and who runs, instead of an IOException.
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(duckdb_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert main(["sql", "select 1", "--target", "duckdb"]) == 2
        err = capsys.readouterr().err
        assert "open for writing in another process" in err and "writer for the test" in err
        assert "Traceback" not in err and "IOException" not in err
    finally:
        release(child)
    assert main(["sql", "select count(*) from t", "--target", "duckdb"]) == 0
