-- The 10 videos most similar to one video by who liked them, from the marts alone: the cosine
-- of the two videos' sets of positive reviewers, co_positives / sqrt(positives_a * positives_b).
-- Choose the video with --vars '{similar_to: <uuid>}'; without it, the most liked video.
--
-- This checks the data, not the model. The model's neighbours come from the published
-- video_embeddings through the serving functions, whose vector SQL differs per engine (pgvector's
-- <=> on Postgres, array_cosine_distance on DuckDB) and so is not written here:
--   Postgres: select * from public.similar_videos('<uuid>', 10);  (sql/postgres/003_functions.sql)
--   DuckDB:   python -m trainer recommend --video <uuid>
-- Both rank by the user tower on that one like, not by the raw cosine of two video vectors.
{%- set similar_to = var('similar_to', none) %}
{%- set chosen = "video_id = cast('" ~ similar_to ~ "' as uuid)" if similar_to else 'true' %}

with

positives as (
    select
        user_id,
        video_id
    from {{ ref('interactions') }}
    where label
),

popularity as (
    select
        video_id,
        positives
    from {{ ref('video_popularity') }}
),

query_video as (
    select
        video_id,
        positives
    from popularity
    where {{ chosen }}
    order by positives desc, cast(video_id as varchar) asc
    limit 1
),

likers as (
    select positives.user_id
    from positives
    inner join query_video
        on positives.video_id = query_video.video_id
),

co_liked as (
    select
        positives.video_id,
        count(*) as co_positives
    from positives
    inner join likers
        on positives.user_id = likers.user_id
    cross join query_video
    where positives.video_id <> query_video.video_id
    group by positives.video_id
),

scored as (
    select
        query_video.video_id as query_video_id,
        co_liked.video_id,
        co_liked.co_positives,
        popularity.positives,
        cast(co_liked.co_positives as double precision)
        / sqrt(cast(popularity.positives as double precision) * query_video.positives)
            as similarity
    from co_liked
    inner join popularity
        on co_liked.video_id = popularity.video_id
    cross join query_video
)

select
    scored.query_video_id,
    scored.video_id,
    catalog.product_url,
    scored.co_positives,
    scored.positives,
    round(cast(scored.similarity as decimal(18, 6)), 4) as similarity
from scored
-- the catalog names every reviewed video, registered in the app's videos yet or not
left join {{ ref('video_catalog') }} as catalog
    on scored.video_id = catalog.video_id
order by scored.similarity desc, scored.co_positives desc, cast(scored.video_id as varchar) asc
limit 10
