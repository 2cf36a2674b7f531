"""The brief's safe flow on two real Postgres servers: a "production" and a work copy.

    snapshot (pg_dump/pg_restore through a read-only role) -> pipeline on the copy ->
    publish to production behind the gate

Production here looks like an app's database: its own `videos` table (extra columns, a trigger
on an app function, row level security) with some of the reviewed products already registered
under random ids, an unrelated table, then our migrations.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
from pathlib import Path

import polars as pl
import psycopg
import pytest

from tests.support.pg_server import PgServer, another_server, pg_bin_dir
from tests.support.warehouses import output_flags
from trainer.cli import main
from trainer.errors import UserError
from trainer.ingest.anonymize import KEY_VARIABLE
from trainer.ingest.load import parse_reviews_csv
from trainer.ingest.synth import BASE_URL, SynthConfig, write_synthetic_csv
from trainer.jobs.snapshot import (
    PgTools,
    check_versions,
    find_tools,
    restore_errors,
    restore_lists,
)
from trainer.release.artifact import load_artifact

GOOD = ["--epochs", "12", "--embedding-dim", "32", "--quiet"]
BAD = ["--epochs", "1", "--lr", "0.00001", "--embedding-dim", "16", "--quiet"]
APP_VIDEOS = 40  # products the app registered itself, under random ids
APP_USER = "0d6f3c2a-9b1e-4f5a-8c7d-1e2f3a4b5c6d"  # liked 4 of them in the app
READER = "snapshot_reader"
TOKEN = re.compile(r"[A-Za-z0-9_]+")


@pytest.fixture(scope="module")
def prod_server(pg_env: PgServer) -> PgServer:
    with another_server("pgtest-prod-") as server:
        yield server


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snapcsv") / "reviews.csv"
    write_synthetic_csv(path, SynthConfig(reviews=25_000, seed=5, genres=24))
    return path


def make_production(server: PgServer, db: str) -> None:
    """An app database: its videos table, an unrelated table, then `migrate --target prod`."""
    server.database(db, activate=False)
    with server.connect(db) as con:
        con.execute(
            "create table public.videos (id uuid primary key default gen_random_uuid(), "
            "product_url text not null unique, title text not null default 'untitled', "
            "created_at timestamptz default now());"
            "create function public.touch_video() returns trigger language plpgsql as "
            "$$ begin new.title := coalesce(new.title, 'untitled'); return new; end $$;"
            "create trigger videos_touch before insert on public.videos for each row "
            "execute function public.touch_video();"
            "alter table public.videos enable row level security;"
            "create policy videos_read on public.videos for select to anon using (true);"
            # an index on an app function, which the work copy will not have
            "create function public.title_key(t text) returns text immutable language sql "
            "as $$ select lower(t) $$;"
            "create index videos_title_key on public.videos (public.title_key(title));"
            "create table public.app_comments (id serial primary key, body text);"
            "insert into public.app_comments (body) select 'comment ' || g "
            "from generate_series(1, 25) as g;"
            # the app's likes (APP_LIKES_TABLE): behind RLS, a key to videos
            "create table public.app_likes (user_id uuid not null, "
            "video_id uuid not null references public.videos (id), "
            "primary key (user_id, video_id));"
            "alter table public.app_likes enable row level security;"
        )
        con.execute(
            "insert into public.videos (product_url, title) "
            "select %s || 'ssn' || lpad(g::text, 6, '0') || '/', 'Title ' || g "
            "from generate_series(0, %s - 1) as g",
            (BASE_URL, APP_VIDEOS),
        )
        con.execute(
            "insert into public.app_likes select %s, id from public.videos "
            "order by product_url limit 4",
            (APP_USER,),
        )
    assert main(["migrate", "--target", "prod"]) == 0
    with server.connect(db) as con:
        con.execute(
            f"do $$ begin if not exists (select 1 from pg_roles where rolname = '{READER}') "
            f"then create role {READER} login bypassrls; end if; end $$;"
            f"grant usage on schema public to {READER};"
            f"grant select on all tables in schema public to {READER};"
            f"alter role {READER} set default_transaction_read_only = on"
        )


def use(monkeypatch, work: PgServer, prod: PgServer, work_db: str, prod_db: str) -> None:
    """Targets: `postgres` is the work copy, `prod` and `prod_readonly` the production."""
    work.database(work_db)
    monkeypatch.setenv("PGDATABASE", work_db)
    monkeypatch.setenv("PROD_DATABASE_URL", prod.conninfo(prod_db))
    monkeypatch.setenv("PROD_READONLY_DATABASE_URL", prod.conninfo(prod_db, user=READER))
    monkeypatch.setenv("PG_BIN_DIR", str(pg_bin_dir()))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)


def pipeline(csv: Path, out: Path, *flags: str) -> int:
    targets = ["--target", "postgres", "--publish-target", "prod"]
    return main(["pipeline", str(csv), *targets, *output_flags(out), *flags])


def fingerprints(con: psycopg.Connection) -> dict[str, str]:
    """md5 of every public table's rows, in a stable order."""
    tables = [
        r[0]
        for r in con.execute(
            "select tablename from pg_tables where schemaname = 'public' order by 1"
        ).fetchall()
    ]
    return {
        t: con.execute(
            f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) "
            f"from public.{t} as x"
        ).fetchone()[0]
        for t in tables
    }


def rows(con: psycopg.Connection, sql: str) -> set[tuple]:
    return set(con.execute(sql).fetchall())


@pytest.fixture(scope="module")
def flow(pg_env: PgServer, prod_server: PgServer, csv: Path, tmp_path_factory):
    """Production made, snapshot taken (recording production before), then one publish."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use(monkeypatch, pg_env, prod_server, "work", "prod")
        monkeypatch.setenv("APP_LIKES_TABLE", "app_likes")  # trained on, so snapshotted
        make_production(prod_server, "prod")
        with prod_server.connect("prod") as con:
            before = fingerprints(con)
            app_videos = rows(con, "select id, product_url, title from public.videos")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["snapshot", "--source", "prod_readonly", "--target", "postgres"])
        assert code == 0
        with prod_server.connect("prod") as con:
            after_snapshot = fingerprints(con)
        with pg_env.connect("work") as con:
            snapped = rows(con, "select id, product_url, title from public.videos")
            triggers = con.execute(
                "select count(*) from pg_trigger where tgrelid = 'public.videos'::regclass "
                "and not tgisinternal"
            ).fetchone()[0]
            indexes = {
                r[0]
                for r in con.execute(
                    "select indexname from pg_indexes where tablename = 'videos'"
                ).fetchall()
            }
        out = tmp_path_factory.mktemp("snap-out")
        code = pipeline(csv, out, *GOOD)
        yield {
            "before": before,
            "after_snapshot": after_snapshot,
            "app_videos": app_videos,
            "snapped": snapped,
            "triggers": triggers,
            "indexes": indexes,
            "printed": printed.getvalue(),
            "code": code,
            "out": out,
            "monkeypatch": monkeypatch,
        }


def test_snapshot_through_a_read_only_role_copies_and_never_writes(
    flow, prod_server: PgServer
) -> None:
    assert flow["after_snapshot"] == flow["before"]  # production untouched by the snapshot
    assert flow["snapped"] == flow["app_videos"] and len(flow["app_videos"]) == APP_VIDEOS
    assert flow["triggers"] == 0  # the app's trigger (and its function) stayed behind
    # an index on an app function cannot be restored: reported, skipped, not fatal
    assert "videos_pkey" in flow["indexes"] and "videos_product_url_key" in flow["indexes"]
    assert "videos_title_key" not in flow["indexes"]
    warning = next(line for line in flow["printed"].splitlines() if "title_key" in line)
    assert warning.startswith("warning: skipped") and "does not exist" in warning
    with (
        psycopg.connect(prod_server.conninfo("prod", user=READER), autocommit=True) as con,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        con.execute("insert into public.app_comments (body) values ('x')")


def test_the_apps_likes_are_copied_trained_on_and_their_user_published(
    flow, pg_env: PgServer, prod_server: PgServer
) -> None:
    assert flow["code"] == 0
    likes = "select user_id, video_id from public.app_likes"
    with prod_server.connect("prod") as prod, pg_env.connect("work") as work:
        assert rows(work, likes) == rows(prod, likes) and len(rows(prod, likes)) == 4
        used = work.execute(
            "select count(*) from recsys.interactions where source = 'app_like' and user_id = %s",
            (f"app:{APP_USER}",),
        ).fetchone()[0]
        assert used == 4
        published = prod.execute(
            "select count(*) from public.user_embeddings where user_id = %s",
            (f"app:{APP_USER}",),
        ).fetchone()[0]
        assert published == 1


def test_train_on_the_copy_publish_to_production(
    flow,
    pg_env: PgServer,
    prod_server: PgServer,
    capsys,
) -> None:
    assert flow["code"] == 0
    with prod_server.connect("prod") as prod, pg_env.connect("work") as work:
        after = fingerprints(prod)
        # nothing else in production is touched
        assert after["app_comments"] == flow["before"]["app_comments"]
        assert set(after) == set(flow["before"])  # no new tables in public
        assert prod.execute(
            "select count(*) from information_schema.tables where table_schema = 'recsys'"
        ).fetchone() == (0,)  # no marts in production
        app = rows(prod, "select id, product_url, title from public.videos")
        assert flow["app_videos"] <= app  # the app's rows as they were
        # registration happens in production's publish, not on the copy: the copy's videos
        # stay the snapshot, and every catalog video arrives with the id the copy trained on
        assert rows(work, "select id, product_url, title from public.videos") == flow["snapped"]
        catalog = rows(
            work,
            "select video_id, product_url from recsys.video_catalog "
            "where is_registered or register_at_publish",
        )
        assert catalog <= rows(prod, "select id, product_url from public.videos")
        assert len(rows(prod, "select id from public.videos")) > len(flow["app_videos"])
        version, published, target = prod.execute(
            "select model_version, published, target from public.model_runs"
        ).fetchone()
        assert published and target == "prod"
        assert rows(prod, "select distinct model_version from public.video_embeddings") == {
            (version,)
        }
        assert prod.execute(
            "select count(*) from public.video_embeddings as e where not exists "
            "(select 1 from public.videos as v where v.id = e.video_id)"
        ).fetchone() == (0,)
        # products the app registered itself are embedded under the app's ids
        embedded_app = prod.execute(
            "select count(*) from public.video_embeddings as e join public.videos as v "
            "on v.id = e.video_id where v.title like 'Title %'"
        ).fetchone()[0]
        assert embedded_app > 0
        reviewed_work = rows(work, "select distinct user_id, video_id from recsys.interactions")
        assert (
            rows(prod, "select user_id, unnest(video_ids) from public.reviewed_videos")
            == reviewed_work
        )
        assert prod.execute("select count(*) from public.popular_videos").fetchone()[0] > 0
        # the copy received no publish
        assert work.execute("select count(*) from public.video_embeddings").fetchone() == (0,)
        user = prod.execute(
            "select user_id from public.user_embeddings order by user_id limit 1"
        ).fetchone()[0]
        reviewed = {str(v) for u, v in reviewed_work if u == user}
    capsys.readouterr()
    assert main(["recommend", "--target", "prod", "--user", user]) == 0
    listed = [line.split()[2] for line in capsys.readouterr().out.splitlines()[3:]]
    assert len(listed) == 10 and not reviewed.intersection(listed)


def test_a_failed_gate_publishes_nothing_to_production(
    flow, csv: Path, prod_server: PgServer
) -> None:
    with prod_server.connect("prod") as con:
        before = fingerprints(con)
    assert pipeline(csv, flow["out"], *BAD) == 1
    with prod_server.connect("prod") as con:
        after = fingerprints(con)
        runs = con.execute(
            "select gate_passed, published from public.model_runs order by started_at"
        ).fetchall()
    assert {t: h for t, h in after.items() if t != "model_runs"} == {
        t: h for t, h in before.items() if t != "model_runs"
    }
    assert runs == [(True, True), (False, False)]  # the failed run is recorded in production


def test_an_anonymized_run_leaves_no_raw_reviewer_id_anywhere(
    pg_env: PgServer,
    prod_server: PgServer,
    csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use(monkeypatch, pg_env, prod_server, "work_anon", "prod_anon")
    monkeypatch.setenv(KEY_VARIABLE, "0123456789abcdef0123456789abcdef")
    make_production(prod_server, "prod_anon")
    assert main(["snapshot", "--source", "prod_readonly", "--target", "postgres"]) == 0
    # The subject is anonymization, not the gate: force the publish so every table is written
    # whether or not this small scrape's model clears popularity by a significant margin.
    forced = ["--force", "--reason", "anonymization test"]
    assert pipeline(csv, tmp_path, "--anonymize", *GOOD, *forced) == 0
    load = parse_reviews_csv(csv)
    raw_ids = {r.strip() for r in load.reviews.column("reviewer_id").to_pylist() if r.strip()}
    assert len(raw_ids) > 1000
    for conninfo in (pg_env.conninfo("work_anon"), prod_server.conninfo("prod_anon")):
        dump = subprocess.run(
            [str(pg_bin_dir() / "pg_dump"), "--data-only", f"--dbname={conninfo}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "user_embeddings" in dump and "reviewed_videos" in dump
        assert not raw_ids & set(TOKEN.findall(dump)), conninfo
    artifact = load_artifact(tmp_path / "two_tower_latest.safetensors")
    assert artifact.user_ids and not raw_ids & set(artifact.user_ids)
    # reviewers are hashed; the app user trained from the app's likes (APP_LIKES_TABLE, still set
    # by the module's flow) keeps the key recommend_for_me computes from the JWT, unhashed
    reviewers = [u for u in artifact.user_ids if not u.startswith("app:")]
    assert reviewers and all(len(u) == 32 for u in reviewers)
    assert set(artifact.user_ids) - set(reviewers) == {f"app:{APP_USER}"}
    blob = (tmp_path / "two_tower_latest.safetensors").read_bytes().decode("latin-1")
    assert not raw_ids & set(TOKEN.findall(blob))
    users = pl.read_parquet(tmp_path / "u.parquet")["user_id"].to_list()
    assert not raw_ids & set(users)
    with prod_server.connect("prod_anon") as con:
        assert con.execute("select published from public.model_runs").fetchone() == (True,)


def test_missing_client_tools_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="postgresql-client-NN.*PG_BIN_DIR"):
        find_tools({"PG_BIN_DIR": str(tmp_path), "PATH": ""})
    tools = find_tools({"PG_BIN_DIR": str(pg_bin_dir())})
    assert tools.major >= 17 and tools.pg_dump.name == "pg_dump"


def test_version_rules_say_what_to_install() -> None:
    tools = PgTools(Path("pg_dump"), Path("pg_restore"), 15, "pg_dump (PostgreSQL) 15.8")
    with pytest.raises(UserError, match="postgresql-client-17"):
        check_versions(tools, source_major=17, work_major=17)
    newer = PgTools(Path("pg_dump"), Path("pg_restore"), 18, "pg_dump (PostgreSQL) 18.3")
    with pytest.raises(UserError, match="pgvector/pgvector:pg17"):
        check_versions(newer, source_major=17, work_major=16)
    check_versions(newer, source_major=17, work_major=17)


def test_the_restore_lists_keep_tables_and_drop_what_names_foreign_objects() -> None:
    toc = "\n".join(
        [
            ";",
            "; Archive created at 2026-11-28",
            "215; 1259 16389 TABLE public videos postgres",
            "216; 1259 16399 TABLE public video_embeddings postgres",
            "3372; 0 16389 TABLE DATA public videos postgres",
            "3220; 2606 16396 CONSTRAINT public videos videos_pkey postgres",
            "3224; 2606 16411 FK CONSTRAINT public video_embeddings video_embeddings_fk postgres",
            "3230; 2620 16420 TRIGGER public videos videos_touch postgres",
            "3231; 3256 16421 POLICY public videos videos_read postgres",
            "3232; 0 0 ROW SECURITY public videos postgres",
            "3233; 0 0 ACL public TABLE videos postgres",
            "3234; 1259 16430 INDEX public videos_title_idx postgres",
            "3235; 0 0 COMMENT public TABLE videos postgres",
            "3236; 0 0 STATISTICS DATA public videos postgres",
        ]
    )
    core, extras = (
        [line.split(" ", 3)[3] for line in listing.splitlines()] for listing in restore_lists(toc)
    )
    assert core == [
        "TABLE public videos postgres",
        "TABLE public video_embeddings postgres",
        "TABLE DATA public videos postgres",
        "CONSTRAINT public videos videos_pkey postgres",
    ]
    assert extras == [
        "INDEX public videos_title_idx postgres",
        "COMMENT public TABLE videos postgres",
    ]


def test_restore_errors_name_the_failed_statement() -> None:
    stderr = (
        "pg_restore: error: could not execute query: ERROR:  function public.f(text) does not "
        "exist\nLINE 1: ...\nCommand was: CREATE INDEX v_f ON public.videos USING btree "
        "(public.f(title));\npg_restore: warning: errors ignored on restore: 1\n"
    )
    assert restore_errors(stderr) == [
        "function public.f(text) does not exist (CREATE INDEX v_f ON public.videos USING btree "
        "(public.f(title));)"
    ]
