{#- Every positive interaction in train or valid: per user about (1 - f) : f, f = valid_fraction.
    The order within a user comes from md5(seed | user | video), so it is the same on every engine
    and every run. A user with n >= 2 positives gets round(n * valid_fraction) valid items, at least
    one and at most n - 1; a user with one positive stays in train.

    tune: the same rule once more, inside each user's train positives, with tune_seed and
    tune_fraction. Those rows stay split = 'train' (the model is refit on all of train), but model
    selection (early stopping, sweeps, the peers' grids) trains without them and scores on them,
    so it never sees 'valid', which only reports and gates. -#}

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
        {{ holdout_draw_rank(var('split_seed')) }} as draw_rank,
        count(*) over (partition by user_id) as user_positives
    from positives
),

splits as (
    select
        user_id,
        video_id,
        case
            when draw_rank <= {{ holdout_count('user_positives', var('valid_fraction')) }}
                then 'valid'
            else 'train'
        end as split
    from ranked
),

train_ranked as (
    select
        user_id,
        video_id,
        {{ holdout_draw_rank(var('tune_seed')) }} as draw_rank,
        count(*) over (partition by user_id) as user_train
    from splits
    where split = 'train'
),

tune_slice as (
    select
        user_id,
        video_id
    from train_ranked
    where draw_rank <= {{ holdout_count('user_train', var('tune_fraction')) }}
),

final as (
    select
        splits.user_id,
        splits.video_id,
        splits.split,
        tune_slice.user_id is not null as tune
    from splits
    left join tune_slice
        on splits.user_id = tune_slice.user_id and splits.video_id = tune_slice.video_id
)

select * from final
