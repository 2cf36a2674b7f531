"""The artifact store interface and its naming rules, shared by every backend.

`publish_versioned` stores `<version>.safetensors` first and `two_tower_latest.safetensors` only
after that copy is safely stored (and, on Supabase, read back and verified), so `latest` never
points at something that is not also kept under its version name.
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
    """What `publish_versioned` stored, in the order it stored them."""

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

    def publish_versioned(self, local_file: Path, version: str) -> Published:
        """Store `<version>.safetensors`, then `two_tower_latest.safetensors`.

        `latest` moves only after the versioned copy is stored: if the first put fails, the
        error propagates and `latest` is untouched.
        """
        local_file = Path(local_file)
        if not local_file.is_file():
            raise UserError(f"model file to publish not found: {local_file}")
        name = versioned_name(version)
        self.put(local_file, name)
        self.put(local_file, LATEST_NAME)
        log.info("published %s and %s to %s", name, LATEST_NAME, self.location)
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
