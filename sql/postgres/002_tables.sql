-- 002: the app's tables. Names and columns match sql/duckdb/app_schema.sql (the embedded
-- default), with vector({dim}) where DuckDB has FLOAT[{dim}].
--
-- Where things live: the app's tables in `public` (Supabase's API schema); the dbt marts
-- (interactions, splits, negatives, quality) in {marts_schema}, a schema PostgREST does not
-- expose; the raw load in `raw` (written by `python -m trainer load`).

create schema if not exists {marts_schema};

-- The app owns videos. Created here only when absent, so an existing table (its columns,
-- grants and policies) is left exactly as the app made it. dbt's ingest_videos post-hook adds
-- reviewed-but-unregistered products as minimal rows (`on conflict do nothing`).
do $$
begin
    if to_regclass('public.videos') is null then
        create table public.videos (
            id uuid primary key default gen_random_uuid(),
            product_url text not null unique,
            created_at timestamptz default now()
        );
        comment on table public.videos is
            'reviews_two_tower: created by migration 002 because the app had no videos table';
    end if;
end
$$;

-- The published model's vectors: one row per video and per user, all of one model_version.
--
-- public.video_embeddings and public.user_embeddings are views, each over one of two
-- identical tables, its slots (video_embeddings_a and _b, user_embeddings_a and _b). A publish
-- fills the slots the views do not show, bare (no index, no key: the COPY writes rows only),
-- then builds their primary keys, the videos' foreign key to videos and their ANN index, points
-- the views at them and empties the old slots, all in one transaction: readers see the old
-- set or the new one. Replacing the rows of one table in place instead would check the foreign
-- key row by row, feed every new row into the old version's ANN index (which the publish drops
-- anyway: ivfflat centroids belong to one embedding space) and leave every old row dead for
-- vacuum: two to three times slower at 100k videos and users (benchmarks/postgres_bench.py).
-- Read, join and call the functions through the views; the slots are the publish's business.
create table if not exists public.video_embeddings_a (
    video_id uuid not null,
    embedding {vector_schema}.vector({dim}) not null,
    model_version text not null,
    updated_at timestamptz not null default now()
);

create table if not exists public.video_embeddings_b (like public.video_embeddings_a including all);

create table if not exists public.user_embeddings_a (
    user_id text not null,
    embedding {vector_schema}.vector({dim}) not null,
    model_version text not null,
    updated_at timestamptz not null default now()
);

create table if not exists public.user_embeddings_b (like public.user_embeddings_a including all);

do $$
declare
    tbl text;
    slot text;
    key text;
    item record;
begin
    foreach tbl in array array['video_embeddings', 'user_embeddings'] loop
        slot := tbl || '_a';
        key := case tbl when 'video_embeddings' then 'video_id' else 'user_id' end;
        -- An install from before the slots has a table under the view's name: it becomes slot
        -- a, rows, keys, index, grants and policies included, renamed after the slot.
        if (select c.relkind from pg_catalog.pg_class as c
            where c.oid = to_regclass('public.' || tbl)) = 'r' then
            execute format('drop table public.%I', slot);
            execute format('alter table public.%I rename to %I', tbl, slot);
            for item in
                select c.conname as name, true as is_constraint
                from pg_catalog.pg_constraint as c
                where c.conrelid = ('public.' || slot)::regclass
                union all
                select i.relname, false from pg_catalog.pg_index as x
                inner join pg_catalog.pg_class as i on i.oid = x.indexrelid
                where x.indrelid = ('public.' || slot)::regclass
                    and not exists (select 1 from pg_catalog.pg_constraint as c
                                    where c.conindid = x.indexrelid)
            loop
                if starts_with(item.name, tbl || '_')
                   and not starts_with(item.name, slot || '_') then
                    execute format(
                        case when item.is_constraint
                            then 'alter table public.' || quote_ident(slot)
                                || ' rename constraint %I to %I'
                            else 'alter index public.%I rename to %I' end,
                        item.name, slot || '_' || substr(item.name, length(tbl) + 2)
                    );
                end if;
            end loop;
        end if;
        if to_regclass('public.' || tbl) is null then
            if not exists (select 1 from pg_catalog.pg_constraint
                           where conrelid = ('public.' || slot)::regclass and contype = 'p') then
                execute format('alter table public.%I add constraint %I primary key (%I)',
                               slot, slot || '_pkey', key);
                if tbl = 'video_embeddings' then
                    execute format('alter table public.%I add constraint %I foreign key '
                                   '(video_id) references public.videos (id) on delete cascade',
                                   slot, slot || '_video_id_fkey');
                end if;
            end if;
            -- security_invoker: the caller's grants and the slots' row level security apply
            execute format('create view public.%I with (security_invoker = true) as '
                           'select %I, embedding, model_version, updated_at from public.%I',
                           tbl, key, slot);
        end if;
    end loop;
end
$$;

-- The most liked published videos, ranked once per publish (same transaction, same
-- model_version): recommend_videos' answer for users without a vector (anon visitors, new
-- users) is then an index scan instead of an aggregate over every interaction.
create table if not exists public.popular_videos (
    video_id uuid primary key references public.videos (id) on delete cascade,
    positives bigint not null,
    model_version text not null
);

create index if not exists popular_videos_rank on public.popular_videos (positives desc, video_id);

-- Every publish rewrites every row (a new model_version): with half of each page free, a row
-- whose positives did not change is updated in place (HOT, no new index entries).
alter table public.popular_videos set (fillfactor = 50);

-- The videos each reviewer has reviewed (any stars), as of the published model's data:
-- recommend_videos never suggests these. One row per reviewer (a sorted uuid array) rather than
-- one per pair: a tenth of the rows, and a publish rewrites only reviewers whose set changed.
-- Refreshed by each publish in the same transaction as the vectors, so serving reads nothing
-- from the marts, and a production database that only receives publishes (the snapshot flow:
-- train on a restored copy) needs no marts at all. No foreign key to videos: with
-- ingest_videos off a reviewed product may have no videos row, and an exclusion list with a
-- dangling id is harmless.
create table if not exists public.reviewed_videos (
    user_id text primary key,
    video_ids uuid[] not null
);

-- One row per training run (published or not), written by the trainer.
create table if not exists public.model_runs (
    model_version text primary key,
    started_at timestamptz not null,
    finished_at timestamptz,
    target text,
    data_fingerprint text,
    config jsonb,
    metrics jsonb,
    gate_passed boolean,
    gate_reason text,
    published boolean not null default false,
    notes jsonb
);

comment on view public.video_embeddings is
    'reviews_two_tower: item-tower vectors of one model version, zero-padded to the column '
    '(the published slot: video_embeddings_a or _b)';
comment on view public.user_embeddings is
    'reviews_two_tower: user-tower vectors of the same model version as video_embeddings '
    '(the published slot: user_embeddings_a or _b)';
comment on table public.video_embeddings_a is
    'reviews_two_tower: a slot of video_embeddings; read the view, each publish swaps the slots';
comment on table public.video_embeddings_b is
    'reviews_two_tower: a slot of video_embeddings; read the view, each publish swaps the slots';
comment on table public.user_embeddings_a is
    'reviews_two_tower: a slot of user_embeddings; read the view, each publish swaps the slots';
comment on table public.user_embeddings_b is
    'reviews_two_tower: a slot of user_embeddings; read the view, each publish swaps the slots';
comment on table public.popular_videos is
    'reviews_two_tower: positive interactions per published video, refreshed by each publish';
comment on table public.reviewed_videos is
    'reviews_two_tower: the videos each reviewer reviewed, excluded by recommend_videos; refreshed by each publish';
comment on table public.model_runs is 'reviews_two_tower: one row per training run';
