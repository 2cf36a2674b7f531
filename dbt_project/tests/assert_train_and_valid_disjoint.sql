-- No user x video is in both train and valid (one_row_per already forbids duplicates; this
-- states the invariant analysts care about), and every user with a valid item keeps a train one.
with

train as (
    select
        user_id,
        video_id
    from {{ ref('interaction_splits') }}
    where split = 'train'
),

valid as (
    select
        user_id,
        video_id
    from {{ ref('interaction_splits') }}
    where split = 'valid'
),

overlap as (
    select
        train.user_id,
        train.video_id,
        'in train and valid' as problem
    from train
    inner join valid
        on train.user_id = valid.user_id and train.video_id = valid.video_id
),

valid_without_train as (
    select
        valid.user_id,
        valid.video_id,
        'valid user without train items' as problem
    from valid
    where not exists (
        select 1 from train
        where train.user_id = valid.user_id
    )
)

select * from overlap
union all
select * from valid_without_train
