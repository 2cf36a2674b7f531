{#- For every train positive, negatives_per_positive videos the user never reviewed, drawn
    uniformly from the train catalog by md5(seed | user | positive | draw). Drawing
    negative_oversample times as many as needed and dropping reviewed or repeated videos leaves
    K per positive except for users who reviewed almost the whole catalog.

    The draws (negative_oversample x K rows per train positive, the biggest relation of the
    build) carry integer keys only: the positive's number, the user's number and the video's
    catalog index. The anti-join, the dedupe and the ranking work on those narrow rows, and the
    K kept per positive get their ids back at the end: the same rows as keying every draw by
    its strings and uuids, at a fraction of the memory. -#}

{%- set per_positive = var('negatives_per_positive') -%}
{%- set draws = per_positive * var('negative_oversample') -%}

with

train_positives as (
    select
        user_id,
        video_id
    from {{ ref('interaction_splits') }}
    where split = 'train'
),

catalog as (
    select
        video_id,
        row_number() over (order by cast(video_id as varchar)) - 1 as video_index
    from (select distinct video_id from train_positives) as train_videos
),

catalog_size as (
    select count(*) as videos from catalog
),

users as (
    select
        user_id,
        row_number() over (order by user_id) as user_number
    from (select distinct user_id from train_positives) as train_users
),

positives as (
    select
        train_positives.user_id,
        train_positives.video_id,
        users.user_number,
        row_number() over (
            order by train_positives.user_id, cast(train_positives.video_id as varchar)
        ) as positive_number
    from train_positives
    inner join users on train_positives.user_id = users.user_id
),

draws as (
    select
        positives.positive_number,
        positives.user_number,
        draw_numbers.draw,
        {{ hash_to_bigint(
            "'" ~ var('negative_seed') ~ "|' || positives.user_id || '|' || "
            ~ "cast(positives.video_id as varchar) || '|' || cast(draw_numbers.draw as varchar)"
        ) }} % catalog_size.videos as video_index
    from positives
    cross join catalog_size
    cross join generate_series(1, {{ draws }}) as draw_numbers (draw)
),

{# Every (user, catalog video) pair the user reviewed with any stars, in split, as numbers. #}
reviewed as (
    select distinct
        users.user_number,
        catalog.video_index
    from {{ ref('interactions') }} as interactions
    inner join users on interactions.user_id = users.user_id
    inner join catalog on interactions.video_id = catalog.video_id
),

unreviewed as (
    select draws.*
    from draws
    left join reviewed
        on
            draws.user_number = reviewed.user_number
            and draws.video_index = reviewed.video_index
    where reviewed.user_number is null
),

{# A video drawn twice for one positive counts once, at its first draw. #}
first_draws as (
    select
        positive_number,
        video_index,
        min(draw) as draw
    from unreviewed
    group by positive_number, video_index
),

numbered as (
    select
        positive_number,
        video_index,
        row_number() over (partition by positive_number order by draw) as negative_rank
    from first_draws
)

select
    positives.user_id,
    catalog.video_id,
    positives.video_id as positive_video_id,
    numbered.negative_rank
from numbered
inner join positives on numbered.positive_number = positives.positive_number
inner join catalog on numbered.video_index = catalog.video_index
where numbered.negative_rank <= {{ per_positive }}
