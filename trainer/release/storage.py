"""Model artifacts behind one small interface: a local folder (default) or Supabase Storage.

    store = store_from_env(Path("artifacts/models"))
    store.publish_versioned(Path("artifacts/two_tower.safetensors"), "two_tower_202501050400")

`publish_versioned` stores `<version>.safetensors` first and `two_tower_latest.safetensors` only
after that copy is safely stored (and, on Supabase, read back and verified), so `latest` never
points at something that is not also kept under its version name.

Supabase Storage is used when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are both set (bucket from
SUPABASE_BUCKET, default `models`). It talks to the Storage REST API through the `storage3` client:
the bucket is created when missing, uploads send `x-upsert: true` (without it the server answers
an existing object with HTTP 400 "Duplicate", so re-publishing `latest` would fail), transient
failures (5xx, timeouts, dropped connections) are retried with exponential backoff and jitter,
client errors (4xx) are not, and every upload is downloaded back and compared by size and sha256.
The service-role key never appears in messages, logs or reprs.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import logging
import os
import random
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trainer.errors import UserError

log = logging.getLogger(__name__)

MODEL_PREFIX = "two_tower_"
SUFFIX = ".safetensors"
LATEST_NAME = f"{MODEL_PREFIX}latest{SUFFIX}"
DEFAULT_BUCKET = "models"

# Object names are flat file names: no folders, no dot segments, nothing to escape in a URL.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_VERSION_RE = re.compile(rf"^{MODEL_PREFIX}[A-Za-z0-9][A-Za-z0-9_-]*$")
_TMP_PREFIX = ".tmp-"

T = TypeVar("T")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise UserError(
            f"invalid artifact name {name!r}: use a plain file name "
            "(letters, digits, '.', '_', '-'; no folders)"
        )
    return name


def versioned_name(version: str) -> str:
    """`two_tower_202501050400` -> `two_tower_202501050400.safetensors`."""
    if not _VERSION_RE.match(version or "") or version == LATEST_NAME.removesuffix(SUFFIX):
        raise UserError(
            f"invalid model version {version!r}: expected {MODEL_PREFIX}YYYYMMDDHHMM "
            f"(and not {MODEL_PREFIX}latest)"
        )
    return _check_name(version + SUFFIX)


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


# --------------------------------------------------------------------------- local folder


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy src to dest through a temp file in dest's folder and os.replace: all or nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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


# --------------------------------------------------------------------------- Supabase Storage


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a storage3 error (it chains the httpx HTTPStatusError)."""
    import httpx

    seen: set[int] = set()
    stack: builtins.list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, httpx.HTTPStatusError):
            return cur.response.status_code
        stack.extend([cur.__cause__, cur.__context__])
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


class SupabaseStore(ArtifactStore):
    """Supabase Storage (`<url>/storage/v1`), one private bucket, via the storage3 client."""

    def __init__(
        self,
        url: str,
        service_role_key: str,
        bucket: str = DEFAULT_BUCKET,
        *,
        timeout: float = 60.0,
        attempts: int = 4,
        backoff_base: float = 0.5,
        verify: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx
        from storage3 import SyncStorageClient

        url = (url or "").strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", url):
            raise UserError("SUPABASE_URL must look like https://<project-ref>.supabase.co")
        if not service_role_key or not service_role_key.strip():
            raise UserError("SUPABASE_SERVICE_ROLE_KEY is empty")
        if not re.match(r"^[a-z0-9][a-z0-9._-]{0,62}$", bucket or ""):
            raise UserError(f"invalid Supabase Storage bucket name {bucket!r}")
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.url = url
        self.bucket = bucket
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.verify = verify
        self._sleep = sleep
        self.__key = service_role_key.strip()
        self._bucket_ready = False
        # Our own httpx client: one bounded timeout for connect/read/write, HTTP/1.1.
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), follow_redirects=True
        )
        headers = {"Authorization": f"Bearer {self.__key}", "apikey": self.__key}
        self._client = SyncStorageClient(f"{self.url}/storage/v1/", headers, http_client=self._http)

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self.url!r}, bucket={self.bucket!r})"

    __str__ = __repr__

    def __getstate__(self) -> None:  # no pickling a live client with a secret inside
        raise TypeError("SupabaseStore cannot be pickled")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SupabaseStore:
        return self

    @property
    def location(self) -> str:
        return f"supabase-storage:{self.url}/{self.bucket}"

    # ---------------------------------------------------------------- helpers

    def _redact(self, text: str) -> str:
        text = str(text)
        if self.__key:
            text = text.replace(self.__key, "[redacted]")
        return text

    def _describe(self, exc: BaseException) -> str:
        """A short, secret-free description of a storage3/httpx error."""
        import httpx
        from storage3.exceptions import StorageApiError

        if isinstance(exc, StorageApiError):
            status = _http_status(exc)
            code = exc.code if isinstance(exc.code, str) else ""
            message = str(exc.message).removeprefix("Unable to parse error message:").strip()
            bits = [f"HTTP {status}" if status else None, message or None]
            inner = _as_int(exc.status)
            if inner and inner != status:
                bits.append(f"statusCode {inner}")
            if code and code not in ("InternalError", "LibraryError") and code != message:
                bits.append(code)
            text = ", ".join(b for b in bits if b)
        elif isinstance(exc, httpx.TimeoutException):
            text = f"timed out ({type(exc).__name__})"
        elif isinstance(exc, httpx.TransportError):
            text = f"connection failed ({type(exc).__name__}: {exc})"
        else:
            text = f"{type(exc).__name__}: {exc}"
        return self._redact(text)[:500]

    def _is_transient(self, exc: BaseException) -> bool:
        import httpx
        from storage3.exceptions import StorageApiError

        if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
            return True
        if isinstance(exc, StorageApiError):
            status = _http_status(exc) or 0
            inner = _as_int(exc.status) or 0
            # Storage renders most errors as HTTP 400 with the real code in the body's
            # statusCode (e.g. "503" when its database is saturated): either >= 500 is transient.
            return status >= 500 or inner >= 500
        return False

    def _hint(self, exc: BaseException) -> str:
        statuses = set(self._status_pair(exc)) - {None}
        if statuses & {401, 403}:
            return (
                "; check SUPABASE_SERVICE_ROLE_KEY (the project's service_role key, "
                "not the anon key) and SUPABASE_URL"
            )
        if 413 in statuses:
            return (
                "; the file exceeds the upload size limit: raise the bucket's or the project's "
                "limit in Supabase (Storage settings)"
            )
        return ""

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """fn() with retries on transient failures; a UserError with a clear message otherwise."""
        import httpx
        from storage3.exceptions import StorageApiError
        from storage3.utils import StorageException

        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except (StorageApiError, StorageException, httpx.HTTPError) as exc:
                detail = self._describe(exc)
                if not self._is_transient(exc):
                    raise UserError(
                        f"Supabase Storage: {what} failed: {detail}{self._hint(exc)}"
                    ) from None
                if attempt == self.attempts:
                    raise UserError(
                        f"Supabase Storage: {what} failed after {self.attempts} attempts "
                        f"(last error: {detail}); {self.location} may be unavailable, "
                        "try again later"
                    ) from None
                delay = self.backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                log.warning(
                    "Supabase Storage: %s failed (%s); retry %d/%d in %.2fs",
                    what,
                    detail,
                    attempt,
                    self.attempts - 1,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _status_pair(self, exc: BaseException) -> tuple[int | None, int | None]:
        return _http_status(exc), _as_int(getattr(exc, "status", None))

    def _bucket(self):
        return self._client.from_(self.bucket)

    def _ensure_bucket(self) -> None:
        """Create the (private) bucket when missing; "already exists" is fine."""
        from storage3.exceptions import StorageApiError

        if self._bucket_ready:
            return

        def create() -> None:
            try:
                self._client.create_bucket(self.bucket, options={"public": False})
                log.info("Supabase Storage: created bucket %s", self.bucket)
            except StorageApiError as exc:
                http, inner = self._status_pair(exc)
                text = f"{exc.message} {exc.code}".lower()
                if 409 in (http, inner) or "already exists" in text or "duplicate" in text:
                    return
                raise

        self._call(f"create bucket {self.bucket}", create)
        self._bucket_ready = True

    def _not_found(self, exc: BaseException) -> bool:
        from storage3.exceptions import StorageApiError

        if not isinstance(exc, StorageApiError):
            return False
        http, inner = self._status_pair(exc)
        return 404 in (http, inner)

    # ---------------------------------------------------------------- interface

    def put(self, local_path: Path, name: str) -> None:
        _check_name(name)
        local_path = Path(local_path)
        if not local_path.is_file():
            raise UserError(f"artifact to store not found: {local_path}")
        self._ensure_bucket()
        size = local_path.stat().st_size
        digest = sha256_file(local_path)
        options = {
            "upsert": "true",  # storage3 sends it as the x-upsert header
            "content-type": "application/octet-stream",
            "cache-control": "0",  # `latest` is overwritten in place: no stale CDN copies
        }

        def upload() -> None:
            with open(local_path, "rb") as fh:
                self._bucket().upload(name, fh, options)

        self._call(f"upload {name} ({size} bytes)", upload)
        if self.verify:
            self._verify(name, size, digest)
        log.info("Supabase Storage: stored %s (%d bytes, sha256 %s)", name, size, digest[:12])

    def _verify(self, name: str, size: int, digest: str) -> None:
        data = self._call(f"download {name} to verify it", lambda: self._bucket().download(name))
        got_size, got_digest = len(data), hashlib.sha256(data).hexdigest()
        if got_size != size or got_digest != digest:
            raise UserError(
                f"Supabase Storage: verification of {name} failed: uploaded {size} bytes "
                f"(sha256 {digest[:12]}…) but read back {got_size} bytes "
                f"(sha256 {got_digest[:12]}…); the stored object is not trustworthy"
            )

    def get(self, name: str, dest: Path) -> Path:
        _check_name(name)
        data = self._call(f"download {name}", lambda: self._bucket().download(name))
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return dest

    def exists(self, name: str) -> bool:
        _check_name(name)
        from storage3.exceptions import StorageApiError

        def info() -> bool:
            try:
                self._bucket().info(name)
                return True
            except StorageApiError as exc:
                if self._not_found(exc):  # object or bucket not found
                    return False
                raise

        return self._call(f"look up {name}", info)

    def list(self) -> builtins.list[str]:
        from storage3.exceptions import StorageApiError

        page = 100
        names: builtins.list[str] = []
        offset = 0
        while True:

            def fetch(offset: int = offset) -> builtins.list[dict[str, Any]]:
                try:
                    return self._bucket().list(
                        "", {"limit": page, "offset": offset, "sortBy": {"column": "name"}}
                    )
                except StorageApiError as exc:
                    if self._not_found(exc):  # no bucket yet: nothing stored
                        return []
                    raise

            rows = self._call(f"list bucket {self.bucket}", fetch)
            # Folders come back with id None; artifacts are flat files.
            names.extend(r["name"] for r in rows if r.get("id") is not None and r.get("name"))
            if len(rows) < page:
                break
            offset += page
        return sorted(names)


# --------------------------------------------------------------------------- factory


def store_from_env(local_root: Path, env: Mapping[str, str] | None = None) -> ArtifactStore:
    """Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set, else a folder.

    Setting only one of the two is an error rather than a silent fallback to the local folder
    (a scheduled job would otherwise "publish" to a runner's disk that is thrown away).
    """
    env = os.environ if env is None else env
    url = (env.get("SUPABASE_URL") or "").strip()
    key = (env.get("SUPABASE_SERVICE_ROLE_KEY") or "").strip()
    if url and key:
        bucket = (env.get("SUPABASE_BUCKET") or "").strip() or DEFAULT_BUCKET
        return SupabaseStore(url, key, bucket)
    if url or key:
        missing = "SUPABASE_SERVICE_ROLE_KEY" if url else "SUPABASE_URL"
        present = "SUPABASE_URL" if url else "SUPABASE_SERVICE_ROLE_KEY"
        raise UserError(
            f"{present} is set but {missing} is not: set both to publish to Supabase Storage, "
            "or neither to keep artifacts in the local folder"
        )
    return LocalStore(local_root)
