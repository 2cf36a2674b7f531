"""Embedding write-back on a real Postgres + pgvector: binary COPY into the hidden slots, atomic
versions, faults midway, locking against concurrent publishes and the app's readers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from tests.support.pg_server import PgServer
from tests.support.serving_world import (
    MODEL_DIM,
    N_USERS,
    N_VIDEOS,
    World,
    make_world,
    publish,
    published_slot,
    state,
    vectors,
)
from trainer.backends.postgres import (
    PostgresWarehouse,
    other_slot,
)
from trainer.backends.postgres import slots as slots_module
from trainer.errors import UserError
from trainer.ml.model import fold_in

DB = "publish_tests"


@pytest.fixture(scope="module")
def world(pg_env: PgServer) -> Iterator[World]:
    yield from make_world(pg_env, DB)


# -- write-back -------------------------------------------------------------------------------
def test_publish_pads_to_the_column_dimension(world: World) -> None:
    v, u = publish(world.wh, world, "m1", seed=1)
    with world.connect() as con:
        assert state(con)["video_versions"] == ["m1"] and state(con)["users"] == N_USERS
    stored = world.wh.read(
        f"select embedding from video_embeddings where video_id = '{world.video_ids[3]}'"
    )["embedding"][0].to_numpy()
    assert stored.shape == (256,)
    np.testing.assert_array_equal(stored[:MODEL_DIM], v[3])
    assert not stored[MODEL_DIM:].any()
    # cosine is unchanged by the zero padding; the query is the user tower of one like of the
    # video (trainer.ml.model.fold_in), as the model ranks "viewers of this also like"
    similar = world.wh.similar(world.video_ids[3], 5)
    query = fold_in(v, [3])
    norm = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = norm @ (query / np.linalg.norm(query))
    cos[3] = -np.inf
    assert [r.video_id for r in similar] == [world.video_ids[i] for i in np.argsort(-cos)[:5]]
    np.testing.assert_allclose([r.score for r in similar], np.sort(cos)[::-1][:5], rtol=1e-5)


def test_a_wider_model_is_a_clear_error_naming_both_dimensions(world: World) -> None:
    with world.connect() as con:
        before = state(con)
    with pytest.raises(UserError) as info:
        publish(world.wh, world, "too-wide", seed=2, dim=300)
    message = str(info.value)
    assert "300" in message and "256" in message and "video_embeddings" in message
    with world.connect() as con:
        assert state(con) == before


def test_a_new_version_replaces_the_old_one_entirely(world: World) -> None:
    publish(world.wh, world, "m1", seed=1)
    # m2 drops the first 40 videos and has new vectors for the rest
    subset = world.video_ids[40:]
    v2, _ = publish(world.wh, world, "m2", seed=3, videos=subset)
    with world.connect() as con:
        s = state(con)
        assert s["video_versions"] == ["m2"] and s["user_versions"] == ["m2"]
        assert s["videos"] == len(subset)
        ids = {r[0] for r in con.execute("select video_id::text from public.video_embeddings")}
        assert ids == set(subset)
    got = world.wh.read(f"select embedding from video_embeddings where video_id = '{subset[7]}'")[
        "embedding"
    ][0].to_numpy()
    np.testing.assert_array_equal(got[:MODEL_DIM], v2[7])


def test_publishing_the_same_version_again_is_idempotent(world: World) -> None:
    publish(world.wh, world, "m3", seed=4)
    with world.connect() as con:
        first = state(con)
        stamps = con.execute(
            "select video_id, updated_at from public.video_embeddings order by 1"
        ).fetchall()
    publish(world.wh, world, "m3", seed=4)
    with world.connect() as con:
        again = state(con)
        assert {k: v for k, v in again.items() if k != "index_oid"} == {
            k: v for k, v in first.items() if k != "index_oid"
        }
        # unchanged rows are not rewritten
        assert (
            con.execute(
                "select video_id, updated_at from public.video_embeddings order by 1"
            ).fetchall()
            == stamps
        )


def test_readers_see_the_old_set_or_the_new_one_never_a_mix(world: World) -> None:
    """At every step of a publish another session reads the tables. Until the views are
    pointed at the new slots it gets the old set at once; after that (replacing a view takes
    its lock for the last moments of the transaction) it waits and then gets the new set.
    Never a mix."""
    publish(world.wh, world, "m4", seed=5)
    with world.connect() as con:
        old = state(con)
    readers: list[tuple[str, threading.Thread, dict]] = []

    def read_state(out: dict) -> None:
        with psycopg.connect(world.pg.conninfo(DB), options="-c lock_timeout=60s") as reader:
            out["state"] = state(reader)

    def peek(step: str) -> None:
        out: dict = {}
        thread = threading.Thread(target=read_state, args=(out,))
        thread.start()
        thread.join(2)  # answered at once, or blocked by the swap until the commit
        readers.append((step, thread, out))

    wh = world.warehouse()
    wh.publish_observer = peek
    publish(wh, world, "m5", seed=6)
    wh.close()
    with world.connect() as con:
        new = state(con)
    assert new["video_versions"] == ["m5"]
    for step, thread, out in readers:
        thread.join(60)
        assert out["state"] in (old, new), f"a reader at {step} saw a mix: {out['state']}"
    by_step = {step: out["state"] for step, _, out in readers}
    assert by_step["staged"] == old and by_step["upserted"] == old
    assert by_step["upserted:user_embeddings"] == old  # the new rows are in the hidden slots
    assert by_step["indexed"] == old
    assert by_step["swapped"] == new  # it waited for the commit


@pytest.mark.parametrize(
    "step", ["staged", "upserted:video_embeddings", "upserted", "indexed", "swapped"]
)
def test_an_exception_midway_changes_nothing(world: World, step: str) -> None:
    publish(world.wh, world, "m6", seed=7)
    with world.connect() as con:
        before = state(con)

    def fail(at: str) -> None:
        if at == step:
            raise RuntimeError(f"injected failure at {at}")

    wh = world.warehouse()
    wh.publish_observer = fail
    with pytest.raises(RuntimeError, match="injected"):
        publish(wh, world, "m7", seed=8)
    with world.connect() as con:
        assert state(con) == before  # same rows, same index
    # the same object keeps working once the fault is gone
    wh.publish_observer = None
    publish(wh, world, "m7", seed=8)
    with world.connect() as con:
        assert state(con)["video_versions"] == ["m7"]
    wh.close()
    assert world.wh.recommend(world.user_ids[0], 5)


def test_a_killed_connection_midway_changes_nothing(world: World) -> None:
    publish(world.wh, world, "m8", seed=9)
    with world.connect() as con:
        before = state(con)
    wh = world.warehouse()

    def kill(at: str) -> None:
        if at == "upserted:video_embeddings":
            with world.connect() as other:
                other.execute("select pg_terminate_backend(%s)", (wh.con.info.backend_pid,))

    wh.publish_observer = kill
    with pytest.raises(UserError, match="rolled back"):
        publish(wh, world, "m9", seed=10)
    wh.close()
    with world.connect() as con:
        assert state(con) == before
        # the index is intact and used: force the index path and query through it
        con.execute("set enable_seqscan = off")
        rows = con.execute(
            "select video_id from public.similar_videos(%s, 5)", (world.video_ids[1],)
        ).fetchall()
        assert len(rows) == 5


def test_concurrent_publishes_are_serialized(world: World) -> None:
    first, second = world.warehouse(), world.warehouse()
    holding, release = threading.Event(), threading.Event()
    events: list[str] = []

    def hold(step: str) -> None:
        events.append(f"first:{step}")
        if step == "staged":
            holding.set()
            assert release.wait(30)

    first.publish_observer = hold
    second.publish_observer = lambda step: events.append(f"second:{step}")
    errors: list[BaseException] = []

    def run(wh: PostgresWarehouse, version: str, seed: int) -> None:
        try:
            publish(wh, world, version, seed=seed)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=run, args=(first, "c1", 11))
    b = threading.Thread(target=run, args=(second, "c2", 12))
    a.start()
    assert holding.wait(30)
    b.start()
    with world.connect() as con:
        deadline = time.monotonic() + 10
        waiting = False
        while time.monotonic() < deadline and not waiting:
            waiting = bool(
                con.execute(
                    "select 1 from pg_locks where locktype = 'advisory' and not granted "
                    "and pid = %s",
                    (second.con.info.backend_pid,),
                ).fetchone()
            )
            time.sleep(0.05)
    assert waiting, "the second publish did not wait for the advisory lock"
    assert not [e for e in events if e.startswith("second:")]
    release.set()
    a.join(30)
    b.join(30)
    first.close()
    second.close()
    assert not errors
    assert events.index("first:swapped") < events.index("second:staged")
    with world.connect() as con:
        assert state(con)["video_versions"] == ["c2"]


def test_a_long_reader_of_videos_keeps_the_foreign_key_instead_of_queueing_the_app(
    world: World,
) -> None:
    """The slot to fill loses its foreign key before the COPY (the exclusive lock that takes
    on videos is held for milliseconds). While an analyst's transaction holds videos, that
    lock is not granted within SLOT_LOCK_TIMEOUT: the publish keeps the key (checked row by
    row) rather than queue the app's reads of videos behind it, and still publishes."""

    def next_slot_key(con: psycopg.Connection) -> tuple[str, int | None]:
        slot = other_slot(published_slot(con))
        oid = con.execute(
            "select oid from pg_constraint where contype = 'f' and conrelid = %s::regclass",
            (f"public.{slot}",),
        ).fetchone()
        return slot, oid[0] if oid else None

    publish(world.wh, world, "l1", seed=31)
    with world.connect() as con:
        slot, kept = next_slot_key(con)
    assert kept is not None  # the slot that was published before l1 kept its key
    with world.connect() as analyst:
        analyst.execute("begin")
        analyst.execute("select count(*) from public.videos")
        publish(world.wh, world, "l2", seed=32)
        analyst.execute("rollback")
    with world.connect() as con:
        assert published_slot(con) == slot and state(con)["video_versions"] == ["l2"]
        assert con.execute(
            "select oid from pg_constraint where contype = 'f' and conrelid = %s::regclass",
            (f"public.{slot}",),
        ).fetchone() == (kept,)  # the same constraint: never dropped
        other, before = next_slot_key(con)
    publish(world.wh, world, "l3", seed=33)  # unhindered: dropped before the COPY, added after
    with world.connect() as con:
        assert published_slot(con) == other
        after = con.execute(
            "select oid from pg_constraint where contype = 'f' and conrelid = %s::regclass",
            (f"public.{other}",),
        ).fetchone()
        assert before is not None and after is not None and after[0] != before


def test_a_long_transaction_on_the_views_fails_the_publish_instead_of_stalling_the_app(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pointing the views at the new slots needs an exclusive lock on them; waiting for it
    would queue the app's reads behind the publish for as long as an open analyst session
    lasts. The wait is bounded: after its tries the publish fails with the session named, and
    the previous version stays published."""
    monkeypatch.setattr(slots_module, "SWAP_LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(slots_module, "SWAP_ATTEMPTS", 2)
    publish(world.wh, world, "t1", seed=41)
    with world.connect() as con:
        before = state(con)
    with world.connect() as analyst:
        analyst.execute("begin")
        analyst.execute("select count(*) from public.video_embeddings")
        pid = analyst.info.backend_pid
        expected = rf"could not point the views .* pid {pid}, idle in"
        with pytest.raises(UserError, match=expected) as info:
            publish(world.wh, world, "t2", seed=42)
        assert "previous embeddings stay published" in str(info.value)
        analyst.execute("rollback")
    with world.connect() as con:
        assert state(con) == before
    publish(world.wh, world, "t2", seed=42)
    with world.connect() as con:
        assert state(con)["video_versions"] == ["t2"]


def test_unregistered_video_ids_and_bad_vectors_are_refused(world: World) -> None:
    with world.connect() as con:
        before = state(con)
    stranger = str(uuid.uuid4())
    # a new version (COPY straight into the table: the foreign key refuses it) and the
    # version already published (staged and checked first): the same clear error
    for version in ("bad", before["video_versions"][0]):
        with pytest.raises(UserError, match=r"^1 video ids .* not in public.videos"):
            publish(world.wh, world, version, seed=13, videos=[*world.video_ids[:10], stranger])
    nan = vectors(1, len(world.video_ids))
    nan[3, 3] = np.nan
    with pytest.raises(UserError, match="NaN"):
        world.wh.publish_embeddings(
            (world.video_ids, nan), (world.user_ids, vectors(2, N_USERS)), "bad"
        )
    with pytest.raises(UserError, match="duplicate"):
        world.wh.publish_embeddings(
            (world.video_ids[:2] * 2, vectors(1, 4)), (world.user_ids, vectors(2, N_USERS)), "bad"
        )
    with world.connect() as con:
        assert state(con) == before


def test_a_new_version_is_written_once_and_a_mixed_table_still_ends_right(world: World) -> None:
    """A new version is COPYed into the empty slots: every row is new, stamped with the
    transaction's time. Which path a publish takes is read from one row; should a table ever
    hold a mix of versions, either path still ends with exactly the published rows."""
    publish(world.wh, world, "w1", seed=21)
    with world.connect() as con:
        for table in (published_slot(con), published_slot(con, "user_embeddings")):
            stamps = con.execute(
                f"select count(distinct updated_at), count(distinct xmin::text) from public.{table}"
            ).fetchone()
            assert stamps == (1, 1)
        # a hand-edited row with the version about to be published, in the middle of the keys
        con.execute(
            "update public.video_embeddings set model_version = 'w2' where video_id = %s",
            (sorted(world.video_ids)[N_VIDEOS // 2],),
        )
    v2, _ = publish(world.wh, world, "w2", seed=22)
    with world.connect() as con:
        s = state(con)
        assert s["video_versions"] == ["w2"] and s["videos"] == N_VIDEOS
    got = world.wh.read(
        "select embedding from video_embeddings "
        f"where video_id = '{sorted(world.video_ids)[N_VIDEOS // 2]}'"
    )["embedding"][0].to_numpy()
    np.testing.assert_array_equal(
        got[:MODEL_DIM], v2[world.video_ids.index(sorted(world.video_ids)[N_VIDEOS // 2])]
    )
