"""The artifact store interface and its naming rules, shared by every backend.

A release stores a model in two steps, in this order (trainer/jobs/pipeline.py: `publish`):
`put_version` stores `<version>.safetensors` before the embeddings go live, and `move_latest`
points `two_tower_latest.safetensors` at it after, only once that copy is safely stored (on
Supabase, read back and verified), so `latest` never names something not also kept under its
version name.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError
from trainer.release.versions import LATEST_NAME, SUFFIX, check_version

log = logging.getLogger(__name__)

# Object names are flat file names: no folders, no dot segments, nothing to escape in a URL.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise UserError(
            f"invalid artifact name {name!r}: use a plain file name "
            "(letters, digits, '.', '_', '-'; no folders)"
        )
    return name


def versioned_name(version: str) -> str:
    """`two_tower_202501050400` -> `two_tower_202501050400.safetensors` (rules: versions.py)."""
    return _check_name(check_version(version) + SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Published:
    """A stored model: its versioned name and `latest`, which now holds the same bytes."""

    versioned: str
    latest: str
    size: int
    sha256: str


class ArtifactStore(ABC):
    """Where model files live. Names are flat file names such as `two_tower_latest.safetensors`."""

    @abstractmethod
    def put(self, local_path: Path, name: str) -> None:
        """Store the file at `local_path` as `name`, replacing an existing object (upsert)."""

    @abstractmethod
    def get(self, name: str, dest: Path) -> Path:
        """Copy object `name` to the file `dest` (parents created); return `dest`."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def list(self) -> builtins.list[str]:
        """All object names, sorted."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where objects go, for messages and run records (never contains a secret)."""

    def close(self) -> None:  # noqa: B027 - optional hook; a folder holds no connections
        """Release connections."""

    def __enter__(self) -> ArtifactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put_version(self, local_file: Path, version: str) -> str:
        """Store `local_file` as `<version>.safetensors` (the release's first step); its name."""
        local_file = Path(local_file)
        if not local_file.is_file():
            raise UserError(f"model file to publish not found: {local_file}")
        name = versioned_name(version)
        self.put(local_file, name)
        return name

    def move_latest(self, local_file: Path, version: str) -> Published:
        """Point `two_tower_latest.safetensors` at the stored `version` (the release's last step):
        the same bytes, put under the latest name."""
        local_file = Path(local_file)
        name = versioned_name(version)
        self.put(local_file, LATEST_NAME)
        log.info("%s is now %s in %s", LATEST_NAME, name, self.location)
        return Published(name, LATEST_NAME, local_file.stat().st_size, sha256_file(local_file))

    def promote(self, version: str) -> Published:
        """Make an already stored version `latest` again (for a rollback)."""
        name = versioned_name(version)
        if not self.exists(name):
            known = ", ".join(n for n in self.list() if n != LATEST_NAME) or "none"
            raise UserError(f"no stored model {name} in {self.location} (stored: {known})")
        with tempfile.TemporaryDirectory(prefix="two-tower-promote-") as tmp:
            local = self.get(name, Path(tmp) / name)
            self.put(local, LATEST_NAME)
            return Published(name, LATEST_NAME, local.stat().st_size, sha256_file(local))
