{#- The brief's first checklist item in one place: how many lines, rows, users, videos and
    labels each step produced. One row per metric, so analysts and CI can read it alike. -#}

with

loads as (
    select sum(data_lines) as data_lines from {{ source('raw', 'loads') }}
),

interactions as (
    select * from {{ ref('interactions') }}
),

splits as (
    select * from {{ ref('interaction_splits') }}
),

metrics as (
    select 1 as position, 'file_data_lines' as metric, (select data_lines from loads) as value
    union all
    select 2, 'raw_rows', (select count(*) from {{ ref('stg_reviews') }})
    union all
    select 3, 'rejected_lines', (select count(*) from {{ ref('review_rejects') }})
    union all
    select 4, 'interactions', (select count(*) from interactions)
    union all
    select 5, 'users', (select count(distinct user_id) from interactions)
    union all
    select 6, 'videos', (select count(distinct video_id) from interactions)
    union all
    select 7, 'positives', (select count(*) from interactions where label)
    union all
    select 8, 'train_positives', (select count(*) from splits where split = 'train')
    union all
    select 9, 'valid_positives', (select count(*) from splits where split = 'valid')
    union all
    select 10, 'users_with_valid', (
        select count(distinct user_id) from splits where split = 'valid'
    )
    union all
    select 11, 'negative_samples', (select count(*) from {{ ref('negative_samples') }})
    union all
    select 12, 'videos_ingested', (
        select count(*) from {{ ref('int_video_catalog') }} where not is_registered
    )
)

select
    metric,
    cast(value as bigint) as value
from metrics
order by position
