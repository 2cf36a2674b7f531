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

-- One row per video of the published model; every row has the same model_version (a publish
-- replaces the whole set in one transaction). The ANN index is (re)built by each publish:
-- ivfflat centroids belong to one embedding space.
create table if not exists public.video_embeddings (
    video_id uuid primary key references public.videos (id) on delete cascade,
    embedding {vector_schema}.vector({dim}) not null,
    model_version text not null,
    updated_at timestamptz not null default now()
);

create table if not exists public.user_embeddings (
    user_id text primary key,
    embedding {vector_schema}.vector({dim}) not null,
    model_version text not null,
    updated_at timestamptz not null default now()
);

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

comment on table public.video_embeddings is
    'reviews_two_tower: item-tower vectors of one model version, zero-padded to the column';
comment on table public.user_embeddings is
    'reviews_two_tower: user-tower vectors of the same model version as video_embeddings';
comment on table public.popular_videos is
    'reviews_two_tower: positive interactions per published video, refreshed by each publish';
comment on table public.reviewed_videos is
    'reviews_two_tower: the videos each reviewer reviewed, excluded by recommend_videos; refreshed by each publish';
comment on table public.model_runs is 'reviews_two_tower: one row per training run';
