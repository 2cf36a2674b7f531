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

-- What serving reads beside the vectors, as of the published model's data (as on Postgres): a
-- load or a dbt build that is not published yet changes nothing recommend returns. Refreshed by
-- each publish, in its transaction, from the marts (video_popularity, interactions).
create table if not exists popular_videos (
    video_id uuid primary key,
    positives bigint not null,
    model_version varchar not null
);

create table if not exists reviewed_videos (
    user_id varchar primary key,
    video_ids uuid[] not null
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

-- A vector for an app user with likes but no reviews, without retraining: the user tower with no
-- ID embedding, [0, 1, normalised mean of the liked videos' coordinates 3..] in the published
-- layout (trainer/ml/model.py: fold_in), so its cosine with a video is the model's score order.
--   select * from recommend_for_likes(['<uuid>', '<uuid>']::uuid[], 10);
create or replace macro user_vector_from_likes(likes) as (
    select list_concat(
        [0.0, 1.0],
        list_transform(
            mean[3:],
            lambda x: x / greatest(sqrt(list_sum(list_transform(mean[3:], lambda y: y * y))), 1e-12)
        )
    )
    from (
        select list(avg_value order by dimension) as mean
        from (
            select dims.dimension, avg(e.embedding[dims.dimension]) as avg_value
            from video_embeddings as e
            cross join range(1, {dim} + 1) as dims (dimension)
            where list_contains(likes, e.video_id)
            group by dims.dimension
        )
    )
);

-- `exclude` (optional, a uuid[]; null or empty: none): videos never to return (already shown,
-- disliked), as Postgres's p_exclude:
--   select * from recommend_for_likes(likes, 10, exclude := ['<uuid>']::uuid[]);
create or replace macro recommend_for_likes(likes, k, exclude := []) as table
    select v.id as video_id, v.product_url,
        1 - array_cosine_distance(e.embedding, user_vector_from_likes(likes)::float[{dim}]) as score
    from video_embeddings as e
    join videos as v on v.id = e.video_id
    where not list_contains(likes, e.video_id)
        and not coalesce(list_contains(exclude, e.video_id), false)
    order by score desc, e.video_id
    limit k;
