{#- How many videos have how many interactions: most have a handful. -#}

with

per_video as (
    select
        video_id,
        count(*) as interactions,
        sum(case when label then 1 else 0 end) as positives
    from {{ ref('interactions') }}
    group by video_id
)

{{ activity_buckets('per_video', 'videos') }}
