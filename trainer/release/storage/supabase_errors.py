"""Reading storage3/httpx errors: HTTP status, a secret-free description, a hint, retry or not.

Transient failures (5xx, timeouts, dropped connections) are worth retrying, client errors (4xx)
are not. Storage renders most errors as HTTP 400 with the real code in the body's statusCode, so
both the HTTP status and that inner code are read. Descriptions never contain the service-role
key: it is replaced by `[redacted]` wherever it appears, including in a server's echo of it.
"""

from __future__ import annotations

import builtins
from typing import Any


def http_status(exc: BaseException) -> int | None:
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


def as_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def status_pair(exc: BaseException) -> tuple[int | None, int | None]:
    """(HTTP status, the body's statusCode) of an error; either may be None."""
    return http_status(exc), as_int(getattr(exc, "status", None))


def redact(text: str, secret: str) -> str:
    text = str(text)
    if secret:
        text = text.replace(secret, "[redacted]")
    return text


def describe(exc: BaseException, secret: str) -> str:
    """A short, secret-free description of a storage3/httpx error."""
    import httpx
    from storage3.exceptions import StorageApiError

    if isinstance(exc, StorageApiError):
        status = http_status(exc)
        code = exc.code if isinstance(exc.code, str) else ""
        message = str(exc.message).removeprefix("Unable to parse error message:").strip()
        bits = [f"HTTP {status}" if status else None, message or None]
        inner = as_int(exc.status)
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
    return redact(text, secret)[:500]


def is_transient(exc: BaseException) -> bool:
    import httpx
    from storage3.exceptions import StorageApiError

    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return True
    if isinstance(exc, StorageApiError):
        status = http_status(exc) or 0
        inner = as_int(exc.status) or 0
        # Storage renders most errors as HTTP 400 with the real code in the body's
        # statusCode (e.g. "503" when its database is saturated): either >= 500 is transient.
        return status >= 500 or inner >= 500
    return False


def hint(exc: BaseException) -> str:
    statuses = set(status_pair(exc)) - {None}
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


def is_not_found(exc: BaseException) -> bool:
    from storage3.exceptions import StorageApiError

    if not isinstance(exc, StorageApiError):
        return False
    http, inner = status_pair(exc)
    return 404 in (http, inner)
