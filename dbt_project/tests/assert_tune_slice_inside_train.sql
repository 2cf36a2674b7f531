-- The tune slice is carved out of train only, and never empties a user's train: model selection
-- must never see valid, and every tuned user keeps something to train on.
with

tune_in_valid as (
    select
        user_id,
        cast(video_id as varchar) as video_id,
        'tune row in valid' as problem
    from {{ ref('interaction_splits') }}
    where tune and split = 'valid'
),

per_user as (
    select
        user_id,
        sum(case when split = 'train' and not tune then 1 else 0 end) as fit_rows,
        sum(case when tune then 1 else 0 end) as tune_rows
    from {{ ref('interaction_splits') }}
    group by user_id
),

tune_without_fit as (
    select
        user_id,
        cast(null as varchar) as video_id,
        'tuned user without fit rows' as problem
    from per_user
    where tune_rows > 0 and fit_rows = 0
)

select * from tune_in_valid
union all
select * from tune_without_fit
