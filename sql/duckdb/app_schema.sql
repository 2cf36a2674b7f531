-- The app's tables on the embedded DuckDB warehouse: the same names and columns as the Supabase
-- migrations in sql/postgres, with FLOAT[{dim}] arrays where Postgres has vector({dim}).
-- Applied by `python -m trainer load` (idempotent). DuckDB has no foreign key that allows the
-- app to delete videos, so video_embeddings.video_id is checked by dbt/tests instead.

create schema if not exists raw;

create table if not exists videos (
    id uuid primary key,
    product_url varchar not null unique,
    created_at timestamp default current_timestamp
);

create table if not exists video_embeddings (
    video_id uuid primary key,
    embedding float[{dim}] not null,
    model_version varchar not null,
    updated_at timestamp not null default current_timestamp
);

create table if not exists user_embeddings (
    user_id varchar primary key,
    embedding float[{dim}] not null,
    model_version varchar not null,
    updated_at timestamp not null default current_timestamp
);

create table if not exists model_runs (
    model_version varchar primary key,
    started_at timestamp not null,
    finished_at timestamp,
    target varchar,
    data_fingerprint varchar,
    config json,
    metrics json,
    gate_passed boolean,
    gate_reason varchar,
    published boolean not null default false,
    notes json
);
