-- Exact per-user sizes, the rule restated here rather than taken from the holdout_count macro:
-- of a user's n positives, valid holds round_half_up(n * valid_fraction) bounded to [1, n - 1]
-- (none when n < 2); of the t = n - valid train rows, the tune slice holds the same rule with
-- tune_fraction. Users with positives must all be in interaction_splits.
with

positives as (
    select
        user_id,
        count(*) as n
    from {{ ref('interactions') }}
    where label
    group by user_id
),

splits as (
    select
        user_id,
        sum(case when split = 'valid' then 1 else 0 end) as valid_rows,
        sum(case when split = 'train' then 1 else 0 end) as train_rows,
        sum(case when tune then 1 else 0 end) as tune_rows
    from {{ ref('interaction_splits') }}
    group by user_id
),

expected_valid as (
    select
        user_id,
        n,
        case
            when n < 2 then 0
            else least(n - 1, greatest(1, floor(n * {{ var('valid_fraction') }} + 0.5)))
        end as valid_rows
    from positives
),

expected as (
    select
        user_id,
        valid_rows,
        n - valid_rows as train_rows,
        case
            when n - valid_rows < 2 then 0
            else least(
                n - valid_rows - 1,
                greatest(1, floor((n - valid_rows) * {{ var('tune_fraction') }} + 0.5))
            )
        end as tune_rows
    from expected_valid
)

select
    coalesce(expected.user_id, splits.user_id) as user_id,
    expected.valid_rows as expected_valid,
    splits.valid_rows as actual_valid,
    expected.tune_rows as expected_tune,
    splits.tune_rows as actual_tune
from expected
full outer join splits
    on expected.user_id = splits.user_id
where
    expected.user_id is null
    or splits.user_id is null
    or expected.valid_rows <> splits.valid_rows
    or expected.train_rows <> splits.train_rows
    or expected.tune_rows <> splits.tune_rows
