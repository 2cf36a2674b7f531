-- Checklist: how many interactions, users and videos the marts hold, and how the stars are
-- distributed. One row per star value, then an 'all' row; positives are the rows whose label is
-- true (stars >= var('positive_min_stars')). quality_summary and quality_stars_distribution hold
-- the same counts; this puts them side by side per star value.
with

interactions as (
    select * from {{ ref('interactions') }}
),

totals as (
    select count(*) as all_interactions from interactions
),

per_stars as (
    select
        stars as stars_order,
        cast(stars as varchar) as stars,
        count(*) as interactions,
        count(distinct user_id) as users,
        count(distinct video_id) as videos,
        sum(case when label then 1 else 0 end) as positives
    from interactions
    group by stars
),

overall as (
    select
        6 as stars_order,
        'all' as stars,
        count(*) as interactions,
        count(distinct user_id) as users,
        count(distinct video_id) as videos,
        sum(case when label then 1 else 0 end) as positives
    from interactions
),

counted as (
    select * from per_stars
    union all
    select * from overall
)

select
    counted.stars,
    counted.interactions,
    counted.users,
    counted.videos,
    counted.positives,
    round(
        cast(counted.interactions as decimal(18, 6)) / nullif(totals.all_interactions, 0), 4
    ) as share
from counted
cross join totals
order by counted.stars_order
