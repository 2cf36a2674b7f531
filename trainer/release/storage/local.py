"""The artifact store in a local folder (the default), with all-or-nothing writes.

Every write is a temp file in the destination's folder plus os.replace, so readers never see
half a file, and a failed write leaves the previous object (and no temp file) behind.
"""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

from trainer.errors import UserError
from trainer.files import atomic_path
from trainer.release.storage.base import ArtifactStore, _check_name


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy src to dest all or nothing (trainer/files.py)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


class LocalStore(ArtifactStore):
    """A folder; every write is a temp file plus os.replace, so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def location(self) -> str:
        return str(self.root)

    def put(self, local_path: Path, name: str) -> None:
        _check_name(name)
        local_path = Path(local_path)
        if not local_path.is_file():
            raise UserError(f"artifact to store not found: {local_path}")
        try:
            _atomic_copy(local_path, self.root / name)
        except OSError as exc:
            raise UserError(f"could not store {name} in {self.root}: {exc}") from None

    def get(self, name: str, dest: Path) -> Path:
        _check_name(name)
        src = self.root / name
        if not src.is_file():
            raise UserError(f"no stored artifact {name} in {self.root}")
        dest = Path(dest)
        try:
            _atomic_copy(src, dest)
        except OSError as exc:
            raise UserError(f"could not copy {name} from {self.root} to {dest}: {exc}") from None
        return dest

    def exists(self, name: str) -> bool:
        return (self.root / _check_name(name)).is_file()

    def list(self) -> builtins.list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith(".")
        )
