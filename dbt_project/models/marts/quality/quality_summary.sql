{#- The brief's first checklist item in one place: how many lines, rows, users, videos and
    labels each step produced. One row per metric, so analysts and CI can read it alike. -#}

{%- set quality_metrics = [
    'file_data_lines', 'raw_rows', 'rejected_lines', 'interactions', 'users', 'videos',
    'positives', 'train_positives', 'valid_positives', 'users_with_valid', 'negative_samples',
    'videos_ingested', 'app_likes', 'app_likes_rejected',
] %}

with

interactions as (
    select * from {{ ref('interactions') }}
),

splits as (
    select * from {{ ref('interaction_splits') }}
),

file_lines as (
    select sum(data_lines) as file_data_lines from {{ source('raw', 'loads') }}
),

raw_rows as (
    select count(*) as raw_rows from {{ ref('stg_reviews') }}
),

rejects as (
    select count(*) as rejected_lines from {{ ref('review_rejects') }}
),

interaction_counts as (
    select
        count(*) as interactions,
        count(distinct user_id) as users,
        count(distinct video_id) as videos,
        sum(case when label then 1 else 0 end) as positives
    from interactions
),

split_counts as (
    select
        sum(case when split = 'train' then 1 else 0 end) as train_positives,
        sum(case when split = 'valid' then 1 else 0 end) as valid_positives,
        count(distinct case when split = 'valid' then user_id end) as users_with_valid
    from splits
),

negatives as (
    select count(*) as negative_samples from {{ ref('negative_samples') }}
),

likes as (
    select
        count(*) as app_likes,
        sum(case when reject_reason is not null then 1 else 0 end) as app_likes_rejected
    from {{ ref('int_app_likes') }}
),

ingested as (
    select count(*) as videos_ingested
    from {{ ref('video_catalog') }}
    where register_at_publish
),

counts as (
    select
        file_lines.file_data_lines,
        raw_rows.raw_rows,
        rejects.rejected_lines,
        interaction_counts.interactions,
        interaction_counts.users,
        interaction_counts.videos,
        interaction_counts.positives,
        split_counts.train_positives,
        split_counts.valid_positives,
        split_counts.users_with_valid,
        negatives.negative_samples,
        ingested.videos_ingested,
        likes.app_likes,
        coalesce(likes.app_likes_rejected, 0) as app_likes_rejected
    from file_lines
    cross join raw_rows
    cross join rejects
    cross join interaction_counts
    cross join split_counts
    cross join negatives
    cross join ingested
    cross join likes
),

metrics as (
    {%- for metric in quality_metrics %}
        select
            {{ loop.index }} as position,
            '{{ metric }}' as metric,
            {{ metric }} as value
        from counts
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
)

select
    metric,
    cast(value as bigint) as value
from metrics
order by position
