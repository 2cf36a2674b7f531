{#- For every train positive, negatives_per_positive videos the user never reviewed, drawn
    uniformly from the train catalog by md5(seed | user | positive | draw). Drawing
    negative_oversample times as many as needed and dropping reviewed or repeated videos leaves
    K per positive except for users who reviewed almost the whole catalog. -#}

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

draws as (
    select
        train_positives.user_id,
        train_positives.video_id as positive_video_id,
        draw_numbers.draw,
        {{ hash_to_bigint(
            "'" ~ var('negative_seed') ~ "|' || train_positives.user_id || '|' || "
            ~ "cast(train_positives.video_id as varchar) || '|' || cast(draw_numbers.draw as varchar)"
        ) }} % catalog_size.videos as video_index
    from train_positives
    cross join catalog_size
    cross join generate_series(1, {{ draws }}) as draw_numbers (draw)
),

candidates as (
    select
        draws.user_id,
        draws.positive_video_id,
        draws.draw,
        catalog.video_id
    from draws
    inner join catalog
        on draws.video_index = catalog.video_index
),

unreviewed as (
    select candidates.*
    from candidates
    left join {{ ref('interactions') }} as reviewed
        on
            candidates.user_id = reviewed.user_id
            and candidates.video_id = reviewed.video_id
    where reviewed.user_id is null
),

first_draws as (
    select
        *,
        row_number() over (
            partition by user_id, positive_video_id, video_id order by draw
        ) as copy_number
    from unreviewed
),

numbered as (
    select
        user_id,
        video_id,
        positive_video_id,
        row_number() over (
            partition by user_id, positive_video_id order by draw
        ) as negative_rank
    from first_draws
    where copy_number = 1
)

select
    user_id,
    video_id,
    positive_video_id,
    negative_rank
from numbered
where negative_rank <= {{ per_positive }}
