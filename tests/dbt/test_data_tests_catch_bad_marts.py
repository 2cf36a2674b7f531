"""The dbt data tests can fail: each one passes on a freshly built warehouse and fails once the mart
it guards is corrupted by hand (one flipped label, one lost line, one moved split row...), and a
failing data test stops the weekly pipeline with exit code 2 before anything is trained."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.support.warehouses import build_duckdb, duckdb_target, output_flags
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.synth import SynthConfig, write_synthetic_csv
from trainer.transform.dbt import run_dbt

LABELS = "assert_labels_match_stars"
LINES = "assert_every_line_accounted_for"
DISJOINT = "assert_train_and_valid_disjoint"
SIZES = "assert_split_sizes_follow_rule"
TUNE = "assert_tune_slice_inside_train"
NEGATIVES = "assert_negatives_never_reviewed"
ONE_ROW_PER = "interaction_splits,test_name:one_row_per"
RELATIONSHIPS = "interactions,test_name:relationships"

# A user with exactly two positives (one train, one valid), and one whose valid slice has >= 2.
PAIR_USER = (
    "(select user_id from interaction_splits group by user_id having count(*) = 2 "
    "order by user_id limit 1)"
)
BIG_USER = (
    "(select user_id from interaction_splits group by user_id "
    "having count(*) filter (where split = 'valid') >= 2 order by user_id limit 1)"
)
SPLIT_KEY = "user_id || '|' || cast(video_id as varchar)"
NEGATIVE_KEY = (
    "user_id || '|' || cast(positive_video_id as varchar) || '|' || cast(negative_rank as varchar)"
)
FIRST_POSITIVE = "(select min(source_line_number) from interactions where label)"

# (id, --select, the test expected to fail, SQL that corrupts the warehouse)
CORRUPTIONS = [
    (
        "positive relabelled negative and unsplit",  # the old one-direction test passed this
        LABELS,
        LABELS,
        [
            "delete from interaction_splits s using interactions i where i.user_id = s.user_id "
            f"and i.video_id = s.video_id and i.source_line_number = {FIRST_POSITIVE}",
            f"update interactions set label = false where source_line_number = {FIRST_POSITIVE}",
        ],
    ),
    (
        "threshold of 3 stars, consistently split",  # so did this wrong threshold
        LABELS,
        LABELS,
        [
            "insert into interaction_splits select user_id, video_id, 'train', false "
            "from interactions where stars = 3",
            "update interactions set label = stars >= 3",
        ],
    ),
    (
        "split row without an interaction",
        LABELS,
        LABELS,
        ["insert into interaction_splits values ('nobody', uuid(), 'train', false)"],
    ),
    (
        "one interaction lost",
        LINES,
        LINES,
        ["delete from interactions where source_line_number = 2"],
    ),
    (
        "one rejected line twice",
        LINES,
        LINES,
        [
            "insert into review_rejects select * from review_rejects "
            "where line_number = (select min(line_number) from review_rejects)"
        ],
    ),
    (
        "one line in both tables and one in neither",  # counts agree: the old test passed this
        LINES,
        LINES,
        [
            "update review_rejects set line_number = (select min(source_line_number) "
            "from interactions) where line_number = (select min(line_number) from review_rejects)"
        ],
    ),
    (
        "empty raw.loads",  # the old test compared with NULL and passed
        LINES,
        LINES,
        ["delete from raw.loads"],
    ),
    (
        "one raw row lost",
        LINES,
        LINES,
        ["delete from raw.reviews where line_number = (select max(line_number) from raw.reviews)"],
    ),
    (
        "a record's span runs into the next record",  # spans count, not just first lines
        LINES,
        LINES,
        [
            "update raw.reviews set last_line_number = line_number + 1 "
            "where line_number = (select min(line_number) from raw.reviews)"
        ],
    ),
    (
        "load reject recorded at the validate stage",
        LINES,
        LINES,
        ["update review_rejects set stage = 'validate' where stage = 'load'"],
    ),
    (
        "valid user without train items",
        DISJOINT,
        DISJOINT,
        [f"update interaction_splits set split = 'valid' where user_id = {PAIR_USER}"],
    ),
    (
        "multi-positive user without a valid item",
        DISJOINT,
        DISJOINT,
        [f"update interaction_splits set split = 'train' where user_id = {PAIR_USER}"],
    ),
    (
        "one valid row moved to train",  # the user keeps valid items: only the sizes can tell
        SIZES,
        SIZES,
        [
            f"update interaction_splits set split = 'train' where user_id = {BIG_USER} "
            "and video_id = (select video_id from interaction_splits "
            f"where user_id = {BIG_USER} and split = 'valid' order by video_id limit 1)"
        ],
    ),
    (
        "one tune row dropped from the slice",
        SIZES,
        SIZES,
        [
            f"update interaction_splits set tune = false where {SPLIT_KEY} = "
            f"(select min({SPLIT_KEY}) from interaction_splits where tune)"
        ],
    ),
    (
        "tune row in valid",
        TUNE,
        TUNE,
        [
            f"update interaction_splits set tune = true where {SPLIT_KEY} = "
            f"(select min({SPLIT_KEY}) from interaction_splits where split = 'valid')"
        ],
    ),
    (
        "negative that the user reviewed",
        NEGATIVES,
        NEGATIVES,
        [
            "update negative_samples set video_id = positive_video_id "  # its own positive
            f"where {NEGATIVE_KEY} = (select min({NEGATIVE_KEY}) from negative_samples)"
        ],
    ),
    (
        "duplicated split row",
        ONE_ROW_PER,
        "one_row_per_interaction_splits",
        [
            "insert into interaction_splits select * from interaction_splits "
            "order by user_id, video_id limit 1"
        ],
    ),
    (
        "interaction with an unknown video",
        RELATIONSHIPS,
        "relationships_interactions_video_id",
        [f"update interactions set video_id = uuid() where source_line_number = {FIRST_POSITIVE}"],
    ),
]


@pytest.fixture(scope="module", autouse=True)
def dbt_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """dbt's target/ and logs/ in a temporary directory, away from the working tree's."""
    scratch = tmp_path_factory.mktemp("dbt_paths")
    saved = {name: os.environ.get(name) for name in ("DBT_TARGET_PATH", "DBT_LOG_PATH")}
    os.environ["DBT_TARGET_PATH"] = str(scratch / "target")
    os.environ["DBT_LOG_PATH"] = str(scratch / "logs")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad_marts") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=2_000, seed=13))
    return path


@pytest.fixture(scope="module")
def built(small_csv: Path) -> Path:
    """Loaded and `dbt build` run (so every data test already passed once)."""
    db = small_csv.parent / "clean.duckdb"
    build_duckdb(small_csv, db)
    return db


@pytest.fixture
def warehouse(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built warehouse, free to corrupt."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built, copy)
    return copy


def dbt_test(db: Path, *select: str) -> None:
    run_dbt(duckdb_target(db), "test", "--select", *select, quiet=True)


def execute(db: Path, statements: list[str]) -> list[int]:
    """Run statements on db; the number of rows each changed."""
    con = duckdb.connect(str(db))
    try:
        return [con.execute(sql).fetchone()[0] for sql in statements]
    finally:
        con.close()


def test_every_guarding_test_passes_on_the_built_warehouse(warehouse: Path) -> None:
    dbt_test(warehouse, *sorted({select for _, select, _, _ in CORRUPTIONS}))


@pytest.mark.parametrize(
    ("select", "failing", "statements"),
    [pytest.param(select, failing, sql, id=name) for name, select, failing, sql in CORRUPTIONS],
)
def test_a_corrupted_mart_fails_its_data_test(
    warehouse: Path, select: str, failing: str, statements: list[str]
) -> None:
    changed = execute(warehouse, statements)
    assert all(changed), f"the corruption changed nothing: {changed}"
    with pytest.raises(UserError) as failure:
        dbt_test(warehouse, select)
    assert f"Failure in test {failing}" in str(failure.value)  # failed, not errored


def test_a_failing_data_test_stops_the_pipeline_with_exit_2(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A loader that loses one line (the last raw row) after recording the load: the pipeline's
    own `dbt build` fails assert_every_line_accounted_for, and nothing is trained or published."""
    import trainer.jobs.pipeline as pipeline

    real_load = pipeline.load_reviews

    def lossy_load(warehouse, path, hmac_key=None, encoding="utf-8"):
        parsed = real_load(warehouse, path, hmac_key, encoding)
        warehouse.execute(
            "delete from raw.reviews where line_number = (select max(line_number) from raw.reviews)"
        )
        return parsed

    db = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(db))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setattr(pipeline, "load_reviews", lossy_load)

    code = main(["pipeline", str(small_csv), *output_flags(tmp_path), "--quiet"])

    assert code == 2
    err = capsys.readouterr().err
    assert "dbt build failed" in err and LINES in err
    assert not (tmp_path / "two_tower_latest.safetensors").exists()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("select count(*) from model_runs").fetchone() == (0,)
    finally:
        con.close()
