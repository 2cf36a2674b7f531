-- Checklist: split sizes. Positives, users and videos per split, with train broken into the rows
-- model selection fits on (tune = false) and the tune slice it scores on (tune = true); valid
-- only reports and gates. A user with a single positive has no valid row (it stays in train), and
-- every valid user keeps train rows, so valid's users are a subset of train's.
with

splits as (
    select * from {{ ref('interaction_splits') }}
),

totals as (
    select count(*) as all_positives from splits
),

per_split as (
    select
        case when split = 'train' then 1 else 4 end as slice_order,
        split as slice,
        count(*) as positives,
        count(distinct user_id) as users,
        count(distinct video_id) as videos
    from splits
    group by split
),

train_slices as (
    select
        case when tune then 3 else 2 end as slice_order,
        case when tune then 'train: tune slice' else 'train: fit' end as slice,
        count(*) as positives,
        count(distinct user_id) as users,
        count(distinct video_id) as videos
    from splits
    where split = 'train'
    group by tune
),

slices as (
    select * from per_split
    union all
    select * from train_slices
)

select
    slices.slice,
    slices.positives,
    slices.users,
    slices.videos,
    round(
        cast(slices.positives as decimal(18, 6)) / nullif(totals.all_positives, 0), 4
    ) as share_of_positives
from slices
cross join totals
order by slices.slice_order
