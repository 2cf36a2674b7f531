"""`python -m trainer rollback VERSION`: a stored version becomes latest and live again.

The file is checked before anything changes: the version inside it must be the one asked for
(a file stored under another version's name would publish that other model), and its sha256 the
one its run recorded in model_runs (`notes.artifact_sha256`, written by the pipeline before it
publishes), so a corrupted or replaced object is refused. Runs recorded before the sha256 was
kept are rolled back unchecked, and the message says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from trainer.backends import Warehouse, connect
from trainer.backends.profiles import load_target
from trainer.backends.run_lock import run_lock
from trainer.errors import UserError
from trainer.jobs.training import write_embeddings
from trainer.ml.config import DEFAULT_STORE_ROOT
from trainer.release.artifact import load_artifact
from trainer.release.storage import sha256_file, store_from_env, versioned_name


def rollback(version: str, target: str | None, store_root: Path = DEFAULT_STORE_ROOT) -> str:
    """Make a stored version latest again and republish its embeddings, once the downloaded file
    is shown to be that version: the version inside it, and the sha256 its run recorded."""
    name = versioned_name(version)
    where = load_target(target)
    with run_lock(where), store_from_env(store_root) as store, connect(where) as warehouse:
        with tempfile.TemporaryDirectory(prefix="two-tower-rollback-") as tmp:
            if not store.exists(name):
                raise UserError(f"no stored model {name} in {store.location}")
            local = store.get(name, Path(tmp) / name)
            recorded = recorded_sha256(warehouse, version)
            if recorded is not None and sha256_file(local) != recorded:
                raise UserError(
                    f"{name} in {store.location} is not the file run {version} stored (its "
                    "sha256 differs from the one in model_runs): nothing was rolled back"
                )
            artifact = load_artifact(local)
        if artifact.version != version:
            raise UserError(
                f"{name} holds model version {artifact.version}, not {version}: nothing was "
                "rolled back"
            )
        write_embeddings(warehouse, artifact)
        store.promote(version)
        warehouse.mark_published(version)
    unchecked = "" if recorded is not None else f" (no sha256 recorded for {version}: unchecked)"
    return f"rolled back: {version} is latest and its embeddings are published{unchecked}"


def recorded_sha256(warehouse: Warehouse, version: str) -> str | None:
    """The sha256 of the model file that run `version` stored, if its model_runs row has one."""
    row = warehouse.run_row(version)
    notes = row.get("notes") if row is not None else None
    return notes.get("artifact_sha256") if notes else None
