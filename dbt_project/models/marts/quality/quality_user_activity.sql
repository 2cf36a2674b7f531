{#- How many users have how many interactions: the long tail that the model must serve. -#}

with

per_user as (
    select
        user_id,
        count(*) as interactions,
        sum(case when label then 1 else 0 end) as positives
    from {{ ref('interactions') }}
    group by user_id
)

{{ activity_buckets('per_user', 'users') }}
