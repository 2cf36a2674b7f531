"""The artifact store in Supabase Storage: one private bucket through the storage3 client.

It talks to the Storage REST API (`<url>/storage/v1`) through the `storage3` client: the bucket
is created when missing, uploads send `x-upsert: true` (without it the server answers an
existing object with HTTP 400 "Duplicate", so re-publishing `latest` would fail), transient
failures (5xx, timeouts, dropped connections) are retried with exponential backoff and jitter,
client errors (4xx) are not, and every upload is downloaded back and compared by size and sha256.
The service-role key never appears in messages, logs or reprs.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trainer.errors import UserError
from trainer.files import atomic_path
from trainer.release.storage.base import ArtifactStore, _check_name, sha256_file
from trainer.release.storage.supabase_errors import (
    describe,
    hint,
    is_not_found,
    is_transient,
    status_pair,
)

log = logging.getLogger(__name__)

DEFAULT_BUCKET = "models"

T = TypeVar("T")


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
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:  # userinfo would be logged with it
            raise UserError(
                "SUPABASE_URL must not carry a user or password (https://<project-ref>.supabase.co);"
                " the key comes from SUPABASE_SERVICE_ROLE_KEY"
            )
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

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """fn() with retries on transient failures; a UserError with a clear message otherwise."""
        import httpx
        from storage3.exceptions import StorageApiError
        from storage3.utils import StorageException

        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except (StorageApiError, StorageException, httpx.HTTPError) as exc:
                detail = describe(exc, self.__key)
                if not is_transient(exc):
                    raise UserError(
                        f"Supabase Storage: {what} failed: {detail}{hint(exc)}"
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
                http, inner = status_pair(exc)
                text = f"{exc.message} {exc.code}".lower()
                if 409 in (http, inner) or "already exists" in text or "duplicate" in text:
                    return
                raise

        self._call(f"create bucket {self.bucket}", create)
        self._bucket_ready = True

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
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
        return dest

    def exists(self, name: str) -> bool:
        _check_name(name)
        from storage3.exceptions import StorageApiError

        def info() -> bool:
            try:
                self._bucket().info(name)
                return True
            except StorageApiError as exc:
                if is_not_found(exc):  # object or bucket not found
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
                    if is_not_found(exc):  # no bucket yet: nothing stored
                        return []
                    raise

            rows = self._call(f"list bucket {self.bucket}", fetch)
            # Folders come back with id None; artifacts are flat files.
            names.extend(r["name"] for r in rows if r.get("id") is not None and r.get("name"))
            if len(rows) < page:
                break
            offset += page
        return sorted(names)
