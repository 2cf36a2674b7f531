"""`python -m trainer` end to end on DuckDB: train, outputs, recommend, and clear errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest
from safetensors import safe_open

from tests.support.warehouses import build_duckdb
from trainer.cli import main
from trainer.release.artifact import load_artifact

FAST = ["--epochs", "3", "--quiet", "--embedding-dim", "16"]


def outputs(tmp: Path) -> list[str]:
    return [
        "--out-model", str(tmp / "m" / "two_tower_latest.safetensors"),
        "--out-video-emb", str(tmp / "video_embeddings.parquet"),
        "--out-user-emb", str(tmp / "user_embeddings.parquet"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(synth_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    db = tmp / "warehouse.duckdb"
    build_duckdb(synth_csv, db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DUCKDB_PATH", str(db))
        assert main(["train", *FAST, *outputs(tmp)]) == 0
    return tmp


def test_train_writes_model_parquet_and_tables(trained: Path) -> None:
    model_dir = trained / "m"
    names = sorted(p.name for p in model_dir.iterdir())
    assert "two_tower_latest.safetensors" in names
    assert any(n.startswith("two_tower_2") and n.endswith(".safetensors") for n in names)
    with safe_open(str(model_dir / "two_tower_latest.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == "two_tower/1"
    artifact = load_artifact(model_dir / "two_tower_latest.safetensors")
    videos = pl.read_parquet(trained / "video_embeddings.parquet")
    assert videos.height == len(artifact.video_ids)
    con = duckdb.connect(str(trained / "warehouse.duckdb"), read_only=True)
    published = con.execute(
        "select count(*), count(distinct model_version), min(len(embedding)) from video_embeddings"
    ).fetchone()
    runs = con.execute("select model_version, metrics from model_runs").fetchall()
    con.close()
    assert published == (videos.height, 1, 256)  # zero-padded to the column dimension
    assert runs[0][0] == artifact.version


def test_train_prints_the_metrics_table_beside_baselines(
    synth_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    db = tmp_path / "w.duckdb"
    build_duckdb(synth_csv, db)
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    assert main(["train", *FAST, *outputs(tmp_path), "--no-publish"]) == 0
    out = capsys.readouterr().out
    for word in ("recall@10", "recall@20", "precision@10", "map@10", "ndcg@10", "coverage@10"):
        assert word in out
    for row in ("two_tower", "popularity", "random"):
        assert f"\n{row}" in out


def test_same_seed_gives_the_same_embeddings(trained: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DUCKDB_PATH", str(trained / "warehouse.duckdb"))
    assert main(["train", *FAST, *outputs(tmp_path), "--no-publish"]) == 0
    first = pl.read_parquet(trained / "video_embeddings.parquet").drop("model_version")
    second = pl.read_parquet(tmp_path / "video_embeddings.parquet").drop("model_version")
    assert first.equals(second)


def test_recommend_excludes_reviewed_videos(trained: Path, capsys, monkeypatch) -> None:
    db = trained / "warehouse.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    con = duckdb.connect(str(db), read_only=True)
    (user,) = con.execute(
        "select user_id from interactions group by user_id order by count(*) desc limit 1"
    ).fetchone()
    reviewed = {r[0] for r in con.execute(
        "select cast(video_id as varchar) from interactions where user_id = ?", [user]
    ).fetchall()}  # fmt: skip
    con.close()
    capsys.readouterr()
    assert main(["recommend", "--user", user]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[2] for line in out.splitlines()[3:]]
    assert len(listed) == 10 and not reviewed.intersection(listed)
    assert all("dmm.co.jp" in line for line in out.splitlines()[3:])
    assert main(["recommend", "--video", listed[0], "-k", "5"]) == 0
    similar = capsys.readouterr().out.splitlines()[3:]
    assert len(similar) == 5 and listed[0] not in "".join(similar)
    assert main(["recommend", "--likes", ",".join(listed[:3]), "-k", "4"]) == 0
    for_likes = capsys.readouterr().out.splitlines()[3:]
    assert len(for_likes) == 4 and not set(listed[:3]) & {r.split()[2] for r in for_likes}
    assert main(["recommend", "--user", user, "--exclude", *listed[:2]]) == 0
    rest = [line.split()[2] for line in capsys.readouterr().out.splitlines()[3:]]
    assert rest[:8] == listed[2:] and len(rest) == 10
    assert main(["recommend", "--user", user, "--exclude", "not-a-uuid"]) == 2
    assert "uuid" in capsys.readouterr().err


def test_unknown_user_is_a_clear_error(trained: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DUCKDB_PATH", str(trained / "warehouse.duckdb"))
    assert main(["recommend", "--user", "nobody-at-all"]) == 2
    err = capsys.readouterr().err
    assert "unknown user id 'nobody-at-all'" in err and "Traceback" not in err


def test_missing_file_and_missing_marts_are_clear_errors(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "empty.duckdb"))
    assert main(["load", str(tmp_path / "nope.csv")]) == 2
    assert "reviews file not found" in capsys.readouterr().err
    assert main(["train", *FAST, *outputs(tmp_path)]) == 2
    assert "table interactions is missing" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_no_positives_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    csv = tmp_path / "low.csv"
    csv.write_text(
        "product_url,reviewer_id,stars\n"
        + "".join(f"https://x.jp/cid=v{i}/,r{i % 3},{1 + i % 3}\n" for i in range(30))
    )
    db = tmp_path / "w.duckdb"
    build_duckdb(csv, db)
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    assert main(["train", *FAST, *outputs(tmp_path)]) == 2
    assert "no positives left" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "video_embeddings.parquet").exists()


def test_an_embedding_dim_without_room_for_bias_and_norm_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--embedding-dim", "2"]) == 2
    assert "--embedding-dim must be at least 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--lr", "1e38"), ("--lr", "0"), ("--lr", "nan"), ("--temperature", "-1"),
        ("--holdout", "1"), ("--id-dropout", "1"), ("--epochs", "0"), ("--batch-size", "0"),
        ("--negatives", "0"), ("--patience", "0"),
    ],
)  # fmt: skip
def test_training_flags_out_of_range_are_refused_before_any_work(
    flag: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for command in (["train"], ["pipeline", str(tmp_path / "absent.csv")]):
        assert main([*command, flag, value]) == 2
        err = capsys.readouterr().err
        assert f"{flag} " in err and "out of range" in err
        assert "Traceback" not in err


def test_a_diverged_model_is_refused_before_anything_is_saved() -> None:
    import numpy as np

    from trainer.errors import UserError
    from trainer.jobs.training import refuse_diverged

    good = np.ones((3, 4), np.float32)
    refuse_diverged(good, good)  # finite: no error
    for bad in (np.nan, np.inf):
        broken = good.copy()
        broken[1, 2] = bad
        with pytest.raises(UserError, match="training diverged"):
            refuse_diverged(good, broken)
        with pytest.raises(UserError, match="training diverged"):
            refuse_diverged(broken, good)
