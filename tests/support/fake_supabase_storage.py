"""A local stand-in for Supabase Storage's REST API (`/storage/v1/...`), for tests.

It answers the calls the storage3 client makes (checked against storage3 2.x's source:
`_sync/bucket.py` and `_sync/file_api.py`) the way the real server does:

- auth: `apikey` and `Authorization: Bearer <key>`; neither, or a wrong `apikey` -> 401 (the API
  gateway's answers), a missing or wrong bearer token -> 403.
- errors are JSON `{"statusCode": "<code>", "error": ..., "message": ...}` sent with HTTP 400 (the
  real server answers every non-500 error with 400 and puts the real code in the body), e.g.
  a plain POST to an existing object without `x-upsert: true` ->
  400 `{"statusCode":"409","error":"Duplicate","message":"The resource already exists"}`,
  an unknown bucket -> 400 `{"statusCode":"404","error":"Bucket not found",...}`.
- `POST /bucket` {id, name, public}; `GET /bucket`, `GET /bucket/{id}`;
  `POST /object/{bucket}/{path}` (multipart form with a `file` part, or a raw body) with
  `x-upsert`; `PUT` (update); `GET /object/{bucket}/{path}` (also `/object/authenticated/...`);
  `GET /object/info/{bucket}/{path}`; `POST /object/list/{bucket}` {prefix, limit, offset,
  sortBy, search}; `DELETE /object/{bucket}` {prefixes}.

Fault switches: `fail_next(n, status)` answers the next n requests with that status (503 by
default, body like a gateway's), `hang_next(n, seconds)` stalls the next n requests longer than a
client's timeout, `corrupt_next_upload()` stores a damaged copy of the next upload.
Every request is recorded in `requests` (method, path, lower-cased headers, body size, form).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PREFIX = "/storage/v1"


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    cache_control: str
    created_at: str
    updated_at: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    form: dict[str, str] = field(default_factory=dict)


class _Error(Exception):
    def __init__(self, http: int, status_code: str, error: str, message: str) -> None:
        super().__init__(message)
        self.http, self.status_code, self.error, self.message = http, status_code, error, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _bucket_not_found() -> _Error:
    return _Error(400, "404", "Bucket not found", "Bucket not found")


def _object_not_found() -> _Error:
    return _Error(400, "404", "not_found", "Object not found")


def _duplicate() -> _Error:
    return _Error(400, "409", "Duplicate", "The resource already exists")


class FakeSupabaseStorage:
    """Start with `with FakeSupabaseStorage() as fake:`; point clients at `fake.url`."""

    def __init__(self, key: str = "service-role-key-for-tests") -> None:
        self.key = key
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.bucket_meta: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._fail: list[int] = []
        self._hang: list[float] = []
        self._corrupt_uploads = 0
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSupabaseStorage:
        fake = self

        class Handler(_Handler):
            storage = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSupabaseStorage:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The project URL (what SUPABASE_URL holds); the API lives under /storage/v1."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ fault switches

    def fail_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._hang.extend([seconds] * n)

    def corrupt_next_upload(self, n: int = 1) -> None:
        with self._lock:
            self._corrupt_uploads += n

    # ------------------------------------------------------------------ inspection

    def object_bytes(self, bucket: str, name: str) -> bytes:
        return self.buckets[bucket][name].data

    def sha256(self, bucket: str, name: str) -> str:
        return hashlib.sha256(self.object_bytes(bucket, name)).hexdigest()

    def requests_for(self, method: str, path_contains: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    # ------------------------------------------------------------------ the API

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        """Return a JSON-able value or bytes; raise _Error for an error answer."""
        rest = path[len(PREFIX) :]
        parts = [unquote(p) for p in rest.strip("/").split("/")] if rest.strip("/") else []
        with self._lock:
            if parts[:1] == ["bucket"]:
                return self._bucket_api(method, parts[1:], body)
            if parts[:1] == ["object"]:
                return self._object_api(method, parts[1:], headers, body)
        raise _Error(404, "404", "Not Found", f"Route {method}:{path} not found")

    def _bucket_api(self, method: str, parts: list[str], body: bytes) -> Any:
        if method == "GET" and not parts:
            return [self._bucket_json(b) for b in sorted(self.buckets)]
        if method == "GET" and len(parts) == 1:
            if parts[0] not in self.buckets:
                raise _bucket_not_found()
            return self._bucket_json(parts[0])
        if method == "POST" and not parts:
            payload = _json(body)
            bucket_id = str(payload.get("id") or payload.get("name") or "")
            if not bucket_id or "/" in bucket_id:
                raise _Error(400, "400", "Invalid Input", "Bucket name invalid")
            if bucket_id in self.buckets:
                raise _duplicate()
            self.buckets[bucket_id] = {}
            now = _now()
            self.bucket_meta[bucket_id] = {
                "public": bool(payload.get("public", False)),
                "created_at": now,
                "updated_at": now,
            }
            return {"name": bucket_id}
        raise _Error(404, "404", "Not Found", "Route not found")

    def _bucket_json(self, bucket_id: str) -> dict[str, Any]:
        meta = self.bucket_meta[bucket_id]
        return {
            "id": bucket_id,
            "name": bucket_id,
            "owner": "",
            "public": meta["public"],
            "file_size_limit": None,
            "allowed_mime_types": None,
            "created_at": meta["created_at"],
            "updated_at": meta["updated_at"],
        }

    def _objects(self, bucket: str) -> dict[str, StoredObject]:
        if bucket not in self.buckets:
            raise _bucket_not_found()
        return self.buckets[bucket]

    def _object_api(
        self, method: str, parts: list[str], headers: dict[str, str], body: bytes
    ) -> Any:
        if len(parts) >= 2 and parts[0] == "list" and method == "POST":
            return self._list(parts[1], _json(body))
        if len(parts) >= 3 and parts[0] == "info" and method == "GET":
            bucket, name = parts[1], "/".join(parts[2:])
            return self._info(bucket, name)
        if len(parts) >= 3 and parts[0] == "authenticated" and method == "GET":
            parts = parts[1:]
        if method == "DELETE" and len(parts) == 1:
            objects = self._objects(parts[0])
            removed = []
            for name in _json(body).get("prefixes", []):
                if objects.pop(name, None) is not None:
                    removed.append({"name": name, "bucket_id": parts[0]})
            return removed
        if len(parts) < 2:
            raise _Error(404, "404", "Not Found", "Route not found")
        bucket, name = parts[0], "/".join(parts[1:])
        if method == "GET":
            objects = self._objects(bucket)
            if name not in objects:
                raise _object_not_found()
            return objects[name].data
        if method in ("POST", "PUT"):
            return self._upload(method, bucket, name, headers, body)
        raise _Error(404, "404", "Not Found", "Route not found")

    def _upload(
        self, method: str, bucket: str, name: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        objects = self._objects(bucket)
        data, content_type, cache_control = _file_from_request(headers, body)
        exists = name in objects
        if method == "POST" and exists and headers.get("x-upsert", "").lower() != "true":
            raise _duplicate()
        if method == "PUT" and not exists:
            raise _object_not_found()
        if self._corrupt_uploads:
            self._corrupt_uploads -= 1
            data = data[:-1] + bytes([data[-1] ^ 0xFF]) if data else b"\x00"
        now = _now()
        old = objects.get(name)
        objects[name] = StoredObject(
            data=data,
            content_type=content_type,
            cache_control=cache_control,
            created_at=old.created_at if old else now,
            updated_at=now,
            id=old.id if old else str(uuid.uuid4()),
        )
        return {"Id": objects[name].id, "Key": f"{bucket}/{name}"}

    def _metadata(self, obj: StoredObject) -> dict[str, Any]:
        return {
            "eTag": f'"{hashlib.md5(obj.data).hexdigest()}"',  # noqa: S324 - S3's ETag is an MD5
            "size": len(obj.data),
            "mimetype": obj.content_type,
            "cacheControl": f"max-age={obj.cache_control}",
            "lastModified": obj.updated_at,
            "contentLength": len(obj.data),
            "httpStatusCode": 200,
        }

    def _info(self, bucket: str, name: str) -> dict[str, Any]:
        objects = self._objects(bucket)
        if name not in objects:
            raise _object_not_found()
        obj = objects[name]
        meta = self._metadata(obj)
        return {
            "id": obj.id,
            "version": obj.id,
            "name": name,
            "bucket_id": bucket,
            "size": meta["size"],
            "content_type": obj.content_type,
            "cache_control": meta["cacheControl"],
            "etag": meta["eTag"],
            "metadata": {},
            "last_modified": obj.updated_at,
            "created_at": obj.created_at,
        }

    def _list(self, bucket: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        objects = self._objects(bucket)
        prefix = str(payload.get("prefix") or "").strip("/")
        search = str(payload.get("search") or "")
        limit = int(payload.get("limit", 100))
        offset = int(payload.get("offset", 0))
        sort = payload.get("sortBy") or {}
        entries: dict[str, dict[str, Any]] = {}
        for full, obj in objects.items():
            if prefix and not full.startswith(prefix + "/"):
                continue
            rel = full[len(prefix) + 1 :] if prefix else full
            head, sep, _ = rel.partition("/")
            if search and not head.startswith(search):
                continue
            if sep:  # a "folder" one level down
                entries.setdefault(
                    head,
                    {
                        "name": head,
                        "id": None,
                        "updated_at": None,
                        "created_at": None,
                        "last_accessed_at": None,
                        "metadata": None,
                    },
                )
            else:
                entries[head] = {
                    "name": head,
                    "id": obj.id,
                    "updated_at": obj.updated_at,
                    "created_at": obj.created_at,
                    "last_accessed_at": obj.updated_at,
                    "metadata": self._metadata(obj),
                }
        column = sort.get("column", "name")
        rows = sorted(entries.values(), key=lambda r: str(r.get(column) or ""))
        if str(sort.get("order", "asc")).lower() == "desc":
            rows.reverse()
        return rows[offset : offset + limit]


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise _Error(400, "400", "Invalid JSON", "Body is not valid JSON") from exc
    return value if isinstance(value, dict) else {}


def _file_from_request(headers: dict[str, str], body: bytes) -> tuple[bytes, str, str]:
    """(file bytes, content type, cacheControl) from a multipart form or a raw body."""
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        form: dict[str, str] = {}
        file_part = None
        for part in message.iter_parts():
            field_name = part.get_param("name", header="content-disposition")
            if field_name == "file":
                file_part = part
            elif field_name:
                form[str(field_name)] = part.get_payload(decode=True).decode()
        if file_part is None:
            raise _Error(400, "400", "InvalidRequest", "No content provided")
        return (
            file_part.get_payload(decode=True) or b"",
            file_part.get_content_type(),
            form.get("cacheControl", "3600"),
        )
    return body, content_type or "application/octet-stream", headers.get("cache-control", "3600")


def _form_fields(headers: dict[str, str], body: bytes) -> dict[str, str]:
    content_type = headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name and name != "file":
            fields[str(name)] = part.get_payload(decode=True).decode()
    return fields


class _Handler(BaseHTTPRequestHandler):
    storage: FakeSupabaseStorage
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, bytes):
            body, ctype = payload, "application/octet-stream"
        else:
            body, ctype = json.dumps(payload).encode(), "application/json; charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self) -> None:
        fake = self.storage
        path = urlsplit(self.path).path
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            form = _form_fields(headers, body)
        except Exception:  # noqa: BLE001 - recording is best effort
            form = {}
        with fake._lock:
            fake.requests.append(Recorded(self.command, path, headers, len(body), form))
            fail = fake._fail.pop(0) if fake._fail else None
            hang = fake._hang.pop(0) if fake._hang else None
        if hang is not None:
            fake._stop.wait(hang)  # the client gives up first; then drop the connection
            self.close_connection = True
            return
        if fail is not None:
            self._send(fail, {"message": "Service Unavailable (injected)"})
            return
        if not path.startswith(PREFIX + "/"):
            self._send(404, {"message": "no Route matched with those values"})
            return
        apikey = headers.get("apikey")
        auth = headers.get("authorization", "")
        if not apikey and not auth:
            self._send(401, {"message": "No API key found in request"})
            return
        if apikey is not None and apikey != fake.key:
            self._send(401, {"message": "Invalid API key"})  # the API gateway's answer
            return
        if auth != f"Bearer {fake.key}":
            self._send(
                403, {"statusCode": "403", "error": "Unauthorized", "message": "invalid signature"}
            )
            return
        try:
            result = fake.handle(self.command, path, headers, body)
        except _Error as err:
            payload = {"statusCode": err.status_code, "error": err.error, "message": err.message}
            self._send(err.http, payload)
            return
        self._send(200, result)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch
