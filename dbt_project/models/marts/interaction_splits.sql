{#- Every positive interaction in train or valid: per user about (1 - f) : f, f = valid_fraction.
    The order within a user comes from md5(seed | user | video), so it is the same on every engine
    and every run. A user with n >= 2 positives gets round(n * valid_fraction) valid items, at least
    one and at most n - 1; a user with one positive stays in train. -#}

with

positives as (
    select
        user_id,
        video_id
    from {{ ref('interactions') }}
    where label
),

ranked as (
    select
        user_id,
        video_id,
        row_number() over (
            partition by user_id
            order by
                md5(
                    '{{ var("split_seed") }}|' || user_id || '|' || cast(video_id as varchar)
                ),
                cast(video_id as varchar)
        ) as draw_rank,
        count(*) over (partition by user_id) as user_positives
    from positives
),

valid_quota as (
    select
        *,
        case
            when user_positives < 2 then 0
            else least(
                user_positives - 1,
                greatest(1, floor(user_positives * {{ var('valid_fraction') }} + 0.5))
            )
        end as valid_items
    from ranked
),

splits as (
    select
        user_id,
        video_id,
        case when draw_rank <= valid_items then 'valid' else 'train' end as split
    from valid_quota
)

select * from splits
