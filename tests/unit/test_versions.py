"""Version names: one format for the trainer, the pipeline, the stores and rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trainer.errors import UserError
from trainer.release.storage import versioned_name
from trainer.release.versions import LATEST_NAME, check_version, first_free, new_version


def test_a_version_is_the_utc_minute_and_its_file_adds_the_suffix() -> None:
    version = new_version(datetime(2026, 12, 2, 4, 5, 59, tzinfo=UTC))
    assert version == "two_tower_202612020405"
    assert versioned_name(version) == "two_tower_202612020405.safetensors"


def test_a_taken_minute_gets_the_next_free_suffix() -> None:
    taken = {"two_tower_202612020405", "two_tower_202612020405_2"}
    assert first_free("two_tower_202612020405", taken.__contains__) == "two_tower_202612020405_3"
    assert first_free("two_tower_202612020406", taken.__contains__) == "two_tower_202612020406"


@pytest.mark.parametrize(
    "bad", ["", "latest", "two_tower_latest", "two_tower_../x", "other_202612020405", None]
)
def test_names_that_are_not_versions_are_refused(bad) -> None:
    with pytest.raises(UserError, match="invalid model version"):
        check_version(bad)
    assert LATEST_NAME == "two_tower_latest.safetensors"
