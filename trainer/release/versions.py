"""Model version names: how a version is named, how its file is named, and what `latest` is.

One home for the format, so the trainer, the pipeline, the stores and the rollback command agree:
a version is `two_tower_YYYYMMDDHHMM` (UTC, the minute the run started), with `_2`, `_3`... when
that minute already has a run; its file is `<version>.safetensors`; `two_tower_latest.safetensors`
is the champion the gate compares against.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from trainer.errors import UserError

MODEL_PREFIX = "two_tower_"
SUFFIX = ".safetensors"
LATEST_NAME = f"{MODEL_PREFIX}latest{SUFFIX}"
_STAMP = "%Y%m%d%H%M"
_VERSION_RE = re.compile(rf"^{MODEL_PREFIX}[A-Za-z0-9][A-Za-z0-9_-]*$")


def new_version(now: datetime | None = None) -> str:
    """`two_tower_` + the UTC minute."""
    return MODEL_PREFIX + (now or datetime.now(UTC)).strftime(_STAMP)


def first_free(base: str, taken: Callable[[str], bool]) -> str:
    """`base`, or `base_2`, `base_3`... : the first name `taken` says is free."""
    version, n = base, 1
    while taken(version):
        n += 1
        version = f"{base}_{n}"
    return version


def check_version(version: str) -> str:
    """A version name as stores accept it: the prefix, then letters, digits, '_' or '-'."""
    if not _VERSION_RE.match(version or "") or version == LATEST_NAME.removesuffix(SUFFIX):
        raise UserError(
            f"invalid model version {version!r}: expected {MODEL_PREFIX}YYYYMMDDHHMM "
            f"(and not {MODEL_PREFIX}latest)"
        )
    return version
