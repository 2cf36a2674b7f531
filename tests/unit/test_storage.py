"""Artifact storage: the local folder and Supabase Storage (against a local fake of its API)."""

from __future__ import annotations

import hashlib
import logging
import pickle
import traceback
from pathlib import Path

import httpx
import pytest

from tests.support.fake_supabase_storage import FakeSupabaseStorage
from trainer.errors import UserError
from trainer.release.storage import (
    LATEST_NAME,
    LocalStore,
    SupabaseStore,
    store_from_env,
    versioned_name,
)

KEY = "sb-service-role-SECRET-0123456789abcdef"
V1 = "two_tower_202501050400"
V2 = "two_tower_202501120400"


def _model(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def release(store, local_file: Path, version: str):  # noqa: ANN001, ANN201
    """The store's part of a release, in the pipeline's order (embeddings go live between)."""
    store.put_version(local_file, version)
    return store.move_latest(local_file, version)


@pytest.fixture
def fake():
    with FakeSupabaseStorage(key=KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def store(fake: FakeSupabaseStorage, sleeps: list[float]):
    with SupabaseStore(
        fake.url, KEY, "models", timeout=2.0, backoff_base=0.5, sleep=sleeps.append
    ) as s:
        yield s


# --------------------------------------------------------------------------- LocalStore


def test_local_publish_then_republish(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "models")
    assert store.list() == []
    first = release(store, _model(tmp_path / "a.safetensors", b"model one"), V1)
    assert (first.versioned, first.latest) == (f"{V1}.safetensors", LATEST_NAME)
    assert first.sha256 == hashlib.sha256(b"model one").hexdigest()
    release(store, _model(tmp_path / "b.safetensors", b"model two"), V2)
    assert store.list() == [f"{V1}.safetensors", f"{V2}.safetensors", LATEST_NAME]
    assert store.get(LATEST_NAME, tmp_path / "out" / "l.st").read_bytes() == b"model two"
    assert store.get(f"{V1}.safetensors", tmp_path / "v1.st").read_bytes() == b"model one"
    assert store.exists(LATEST_NAME) and not store.exists("two_tower_209901010000.safetensors")
    # no temp files left behind
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == store.list()


def test_local_promote_rolls_latest_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    release(store, _model(tmp_path / "a", b"one"), V1)
    release(store, _model(tmp_path / "b", b"two"), V2)
    store.promote(V1)
    assert (tmp_path / LATEST_NAME).read_bytes() == b"one"
    with pytest.raises(UserError, match="no stored model two_tower_209901010000"):
        store.promote("two_tower_209901010000")


def test_local_failed_versioned_put_leaves_latest(tmp_path: Path, monkeypatch) -> None:
    store = LocalStore(tmp_path / "m")
    release(store, _model(tmp_path / "a", b"one"), V1)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("trainer.files.os.replace", broken_replace)
    with pytest.raises(UserError, match="disk full"):
        release(store, _model(tmp_path / "b", b"two"), V2)
    monkeypatch.undo()
    assert (tmp_path / "m" / LATEST_NAME).read_bytes() == b"one"
    assert store.list() == [f"{V1}.safetensors", LATEST_NAME]  # temp file cleaned up


def test_names_are_validated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(UserError, match="invalid artifact name"):
            store.put(_model(tmp_path / "x", b"x"), bad)
    for bad in ("two_tower_latest", "model_2025", "two_tower_../x"):
        with pytest.raises(UserError, match="invalid model version"):
            versioned_name(bad)
    with pytest.raises(UserError, match="no stored artifact missing.safetensors"):
        store.get("missing.safetensors", tmp_path / "out")


# --------------------------------------------------------------------------- SupabaseStore


def test_first_publish_creates_bucket_and_stores_both(
    fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path
) -> None:
    assert "models" not in fake.buckets
    assert store.list() == []  # no bucket yet: nothing stored, nothing created
    published = release(store, _model(tmp_path / "m", b"weights v1" * 100), V1)
    assert fake.bucket_meta["models"]["public"] is False
    assert sorted(fake.buckets["models"]) == [f"{V1}.safetensors", LATEST_NAME]
    assert fake.sha256("models", LATEST_NAME) == published.sha256
    uploads = fake.requests_for("POST", "/storage/v1/object/models/")
    assert [u.path.rsplit("/", 1)[1] for u in uploads] == [f"{V1}.safetensors", LATEST_NAME]
    for u in uploads:  # the shape storage3 sends
        assert u.headers["x-upsert"] == "true"
        assert u.headers["authorization"] == f"Bearer {KEY}" and u.headers["apikey"] == KEY
        assert u.headers["content-type"].startswith("multipart/form-data")
        assert u.form == {"cacheControl": "0"}
    assert len(fake.requests_for("POST", "/storage/v1/bucket")) == 1  # created once per store
    assert store.list() == [f"{V1}.safetensors", LATEST_NAME]
    assert store.exists(LATEST_NAME) and not store.exists(f"{V2}.safetensors")
    got = store.get(LATEST_NAME, tmp_path / "dl" / "latest.safetensors")
    assert got.read_bytes() == b"weights v1" * 100


def test_republish_upserts_latest(
    fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path
) -> None:
    release(store, _model(tmp_path / "a", b"one"), V1)
    release(store, _model(tmp_path / "b", b"two"), V2)
    assert fake.object_bytes("models", LATEST_NAME) == b"two"
    assert fake.object_bytes("models", f"{V1}.safetensors") == b"one"
    assert store.list() == [f"{V1}.safetensors", f"{V2}.safetensors", LATEST_NAME]


def test_plain_post_to_existing_object_is_the_duplicate_error(
    fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path
) -> None:
    """What the brief's `curl -X POST` runs into once `latest` exists."""
    store.put(_model(tmp_path / "a", b"one"), LATEST_NAME)
    url = f"{fake.url}/storage/v1/object/models/{LATEST_NAME}"
    auth = {"Authorization": f"Bearer {KEY}", "apikey": KEY}
    plain = httpx.post(url, headers=auth, files={"file": ("f", b"two")})
    assert plain.status_code == 400
    assert plain.json() == {
        "statusCode": "409",
        "error": "Duplicate",
        "message": "The resource already exists",
    }
    upsert = httpx.post(url, headers={**auth, "x-upsert": "true"}, files={"file": ("f", b"two")})
    assert upsert.status_code == 200 and upsert.json()["Key"] == f"models/{LATEST_NAME}"
    assert fake.object_bytes("models", LATEST_NAME) == b"two"


def test_fake_checks_auth_and_buckets(fake: FakeSupabaseStorage) -> None:
    base = f"{fake.url}/storage/v1"
    assert httpx.get(f"{base}/bucket").status_code == 401
    assert httpx.get(f"{base}/bucket", headers={"apikey": "nope"}).status_code == 401
    wrong = httpx.get(f"{base}/bucket", headers={"apikey": KEY, "Authorization": "Bearer x"})
    assert wrong.status_code == 403
    auth = {"Authorization": f"Bearer {KEY}", "apikey": KEY}
    missing = httpx.get(f"{base}/object/nobucket/x", headers=auth)
    assert missing.status_code == 400 and missing.json()["error"] == "Bucket not found"
    assert httpx.post(f"{base}/bucket", headers=auth, json={"id": "b"}).json() == {"name": "b"}
    again = httpx.post(f"{base}/bucket", headers=auth, json={"id": "b"})
    assert again.status_code == 400 and again.json()["statusCode"] == "409"


def test_existing_bucket_is_fine(fake: FakeSupabaseStorage, sleeps, tmp_path: Path) -> None:
    fake.buckets["models"], fake.bucket_meta["models"] = {}, {"public": False}
    fake.bucket_meta["models"].update(created_at="t", updated_at="t")
    with SupabaseStore(fake.url, KEY, sleep=sleeps.append) as store:
        store.put(_model(tmp_path / "a", b"one"), LATEST_NAME)
    assert fake.object_bytes("models", LATEST_NAME) == b"one"


def test_retry_succeeds_after_injected_503s(
    fake: FakeSupabaseStorage, store: SupabaseStore, sleeps: list[float], tmp_path: Path, caplog
) -> None:
    store.put(_model(tmp_path / "a", b"one"), "warmup.safetensors")  # bucket exists now
    fake.fail_next(3, 503)
    with caplog.at_level(logging.WARNING, logger="trainer.release.storage.supabase"):
        store.put(_model(tmp_path / "b", b"two"), LATEST_NAME)
    assert fake.object_bytes("models", LATEST_NAME) == b"two"
    assert len(sleeps) == 3
    # exponential backoff with jitter: base * 2**i scaled into [0.5, 1.0]
    for i, delay in enumerate(sleeps):
        assert 0.5 * 2**i * 0.5 <= delay <= 0.5 * 2**i
    assert "HTTP 503" in caplog.text and "retry 3/3" in caplog.text
    assert KEY not in caplog.text


def test_gives_up_after_too_many_503s_and_latest_is_untouched(
    fake: FakeSupabaseStorage, store: SupabaseStore, sleeps: list[float], tmp_path: Path
) -> None:
    release(store, _model(tmp_path / "a", b"one"), V1)
    fake.fail_next(4, 503)
    with pytest.raises(UserError) as err:
        release(store, _model(tmp_path / "b", b"two"), V2)
    message = str(err.value)
    assert f"upload {V2}.safetensors" in message and "after 4 attempts" in message
    assert "HTTP 503" in message and "try again later" in message
    assert fake.object_bytes("models", LATEST_NAME) == b"one"
    assert f"{V2}.safetensors" not in fake.buckets["models"]
    assert len(sleeps) == 3


def test_5xx_inside_a_400_body_is_retried(
    fake: FakeSupabaseStorage, store: SupabaseStore, sleeps, tmp_path, monkeypatch
) -> None:
    """Storage renders e.g. a saturated database as HTTP 400 with statusCode "503"."""
    store.put(_model(tmp_path / "a", b"one"), "x.safetensors")
    real_handle = fake.handle
    calls = {"n": 0}

    def flaky(method, path, headers, body):
        calls["n"] += 1
        if calls["n"] == 1:
            from tests.support.fake_supabase_storage import _Error

            raise _Error(400, "503", "DatabaseConnectionLimit", "too many connections")
        return real_handle(method, path, headers, body)

    monkeypatch.setattr(fake, "handle", flaky)
    store.put(_model(tmp_path / "b", b"two"), "x.safetensors")
    assert fake.object_bytes("models", "x.safetensors") == b"two" and len(sleeps) == 1


def test_4xx_is_not_retried(fake: FakeSupabaseStorage, sleeps, tmp_path: Path) -> None:
    with SupabaseStore(fake.url, KEY, sleep=sleeps.append) as store:
        with pytest.raises(UserError, match="not found") as err:
            store.get("two_tower_209901010000.safetensors", tmp_path / "x")
        assert "Bucket not found" in str(err.value) or "Object not found" in str(err.value)
    assert sleeps == []


def test_timeout_is_retried(fake: FakeSupabaseStorage, tmp_path: Path) -> None:
    sleeps: list[float] = []
    with SupabaseStore(fake.url, KEY, timeout=0.3, sleep=sleeps.append) as store:
        store.put(_model(tmp_path / "a", b"one"), "a.safetensors")
        fake.hang_next(1, 5.0)
        store.put(_model(tmp_path / "b", b"two"), "a.safetensors")
        assert fake.object_bytes("models", "a.safetensors") == b"two"
        assert len(sleeps) == 1
        fake.hang_next(2, 5.0)
        with (
            SupabaseStore(fake.url, KEY, timeout=0.3, attempts=2, sleep=sleeps.append) as s2,
            pytest.raises(UserError, match=r"after 2 attempts \(last error: timed out"),
        ):
            s2.exists("a.safetensors")


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    with FakeSupabaseStorage(key=KEY) as gone:
        url = gone.url
    sleeps: list[float] = []
    with (
        SupabaseStore(url, KEY, timeout=1.0, sleep=sleeps.append) as store,
        pytest.raises(UserError, match="connection failed") as err,
    ):
        store.put(_model(tmp_path / "a", b"one"), "a.safetensors")
    assert "after 4 attempts" in str(err.value) and len(sleeps) == 3


def test_verification_mismatch_is_detected(
    fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path
) -> None:
    release(store, _model(tmp_path / "a", b"good model"), V1)
    fake.corrupt_next_upload()
    with pytest.raises(UserError, match="verification of .* failed") as err:
        release(store, _model(tmp_path / "b", b"new model"), V2)
    assert "not trustworthy" in str(err.value)
    # the damaged copy was the versioned one, so latest never moved
    assert fake.object_bytes("models", LATEST_NAME) == b"good model"


def test_secret_never_in_errors_logs_or_repr(
    fake: FakeSupabaseStorage, tmp_path: Path, caplog
) -> None:
    wrong = "sb-WRONG-secret-key-ffffffffffffffff"
    with SupabaseStore(fake.url, wrong, sleep=lambda s: None) as store:
        assert wrong not in repr(store) and wrong not in str(store)
        with pytest.raises(TypeError):
            pickle.dumps(store)
        with caplog.at_level(logging.DEBUG), pytest.raises(UserError) as err:
            store.put(_model(tmp_path / "a", b"x"), LATEST_NAME)
    text = "".join(traceback.format_exception(err.value))
    assert "HTTP 401" in text and "SUPABASE_SERVICE_ROLE_KEY" in text
    assert wrong not in text and wrong not in caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__

    # a server that echoes the key back in its error message is redacted too
    echo = fake.handle

    with SupabaseStore(fake.url, KEY, sleep=lambda s: None) as store:
        from tests.support.fake_supabase_storage import _Error

        def leaky(*args):
            raise _Error(400, "400", "InvalidJWT", f"bad token {KEY}")

        fake.handle = leaky
        try:
            with caplog.at_level(logging.DEBUG), pytest.raises(UserError) as err2:
                store.exists("a.safetensors")
        finally:
            fake.handle = echo
    text = "".join(traceback.format_exception(err2.value))
    assert "[redacted]" in text and KEY not in text and KEY not in caplog.text


def test_store_from_env(tmp_path: Path, fake: FakeSupabaseStorage) -> None:
    local = store_from_env(tmp_path, env={})
    assert isinstance(local, LocalStore) and local.root == tmp_path
    blank = {"SUPABASE_URL": "", "SUPABASE_SERVICE_ROLE_KEY": " "}  # unset GitHub secrets
    assert isinstance(store_from_env(tmp_path, env=blank), LocalStore)
    env = {"SUPABASE_URL": fake.url, "SUPABASE_SERVICE_ROLE_KEY": KEY}
    remote = store_from_env(tmp_path, env=env)
    assert isinstance(remote, SupabaseStore) and remote.bucket == "models"
    remote.close()
    custom = store_from_env(tmp_path, env={**env, "SUPABASE_BUCKET": "weekly-models"})
    assert isinstance(custom, SupabaseStore) and custom.bucket == "weekly-models"
    custom.close()
    with pytest.raises(UserError, match="SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY"):
        store_from_env(tmp_path, env={"SUPABASE_URL": fake.url})
    with pytest.raises(UserError, match="SUPABASE_SERVICE_ROLE_KEY is set but SUPABASE_URL") as e:
        store_from_env(tmp_path, env={"SUPABASE_SERVICE_ROLE_KEY": KEY})
    assert KEY not in str(e.value)
    with pytest.raises(UserError, match="SUPABASE_URL must look like"):
        store_from_env(tmp_path, env={**env, "SUPABASE_URL": "not a url"})


def test_store_from_env_reads_os_environ(tmp_path: Path, monkeypatch, fake) -> None:
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    assert isinstance(store_from_env(tmp_path), LocalStore)
    monkeypatch.setenv("SUPABASE_URL", fake.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", KEY)
    store = store_from_env(tmp_path)
    assert isinstance(store, SupabaseStore)
    release(store, _model(tmp_path / "m", b"m"), V1)
    assert store.list() == [f"{V1}.safetensors", LATEST_NAME]
    store.close()


def test_list_pages_past_100_objects(
    fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path
) -> None:
    """Weekly versions pass the API's default page of 100 in two years."""
    store.put(_model(tmp_path / "m", b"m"), LATEST_NAME)
    objects = fake.buckets["models"]
    for i in range(150):
        objects[f"two_tower_2025{i:08d}.safetensors"] = objects[LATEST_NAME]
    names = store.list()
    assert len(names) == 151 and names[-1] == LATEST_NAME


def test_supabase_promote(fake: FakeSupabaseStorage, store: SupabaseStore, tmp_path: Path) -> None:
    release(store, _model(tmp_path / "a", b"one"), V1)
    release(store, _model(tmp_path / "b", b"two"), V2)
    store.promote(V1)
    assert fake.object_bytes("models", LATEST_NAME) == b"one"
