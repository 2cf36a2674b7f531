-- Train and valid split each multi-positive user: a user with a valid item keeps a train one, and
-- a user with two or more positives has a valid item. (The former "in train and valid" half is
-- gone: a row has one split and one_row_per(user_id, video_id) on interaction_splits already
-- forbids a second row, so it could only fail together with that test. It is replaced by the
-- "no valid item" check, which can fail on its own; exact sizes: assert_split_sizes_follow_rule.)
with

per_user as (
    select
        user_id,
        count(*) as positives,
        sum(case when split = 'train' then 1 else 0 end) as train_rows,
        sum(case when split = 'valid' then 1 else 0 end) as valid_rows
    from {{ ref('interaction_splits') }}
    group by user_id
),

valid_without_train as (
    select
        user_id,
        'valid user without train items' as problem
    from per_user
    where valid_rows > 0 and train_rows = 0
),

split_user_without_valid as (
    select
        user_id,
        'user with two or more positives and no valid item' as problem
    from per_user
    where positives >= 2 and valid_rows = 0
)

select * from valid_without_train
union all
select * from split_user_without_valid
