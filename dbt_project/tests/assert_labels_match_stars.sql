-- label is exactly stars >= var('positive_min_stars') (true for an app like; both directions, so
-- a wrong threshold or a flipped label fails), only positives are split, and every positive is
-- split.
with

wrong_label as (
    select
        user_id,
        cast(video_id as varchar) as video_id,
        'label differs from stars >= positive_min_stars' as problem
    from {{ ref('interactions') }}
    where label is distinct from (
        case
            when source = 'app_like' then true
            else stars >= {{ var('positive_min_stars') }}
        end
    )
),

split_mismatch as (
    select
        interactions.user_id,
        cast(interactions.video_id as varchar) as video_id,
        case
            when interactions.label then 'positive not split'
            else 'negative or unlabelled interaction split'
        end as problem
    from {{ ref('interactions') }} as interactions
    left join {{ ref('interaction_splits') }} as splits
        on
            interactions.user_id = splits.user_id
            and interactions.video_id = splits.video_id
    where interactions.label is distinct from (splits.user_id is not null)
),

split_without_interaction as (
    select
        splits.user_id,
        cast(splits.video_id as varchar) as video_id,
        'split row without an interaction' as problem
    from {{ ref('interaction_splits') }} as splits
    where not exists (
        select 1 from {{ ref('interactions') }} as interactions
        where
            interactions.user_id = splits.user_id
            and interactions.video_id = splits.video_id
    )
)

select * from wrong_label
union all
select * from split_mismatch
union all
select * from split_without_interaction
