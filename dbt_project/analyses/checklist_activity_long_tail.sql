-- Checklist: reviews per reviewer and per video, the long tail. A review here is a kept one (an
-- interaction, after validation and dedupe). One row per entity ('user' or 'video') and number of
-- reviews: how many users (videos) have exactly that many, their share, and the cumulative shares
-- of entities and of interactions from the least active up, so the head and the tail can be read
-- off directly. quality_user_activity and quality_video_activity hold the same in fixed buckets.
with

interactions as (
    select * from {{ ref('interactions') }}
),

per_entity as (
    select
        'user' as entity,
        count(*) as reviews
    from interactions
    group by user_id
    union all
    select
        'video' as entity,
        count(*) as reviews
    from interactions
    group by video_id
),

distribution as (
    select
        entity,
        reviews,
        count(*) as entities,
        count(*) * reviews as interactions
    from per_entity
    group by entity, reviews
)

select
    entity,
    reviews,
    entities,
    round(
        cast(entities as decimal(18, 6)) / sum(entities) over (partition by entity), 4
    ) as share,
    round(
        cast(sum(entities) over (partition by entity order by reviews) as decimal(18, 6))
        / sum(entities) over (partition by entity),
        4
    ) as cumulative_share,
    round(
        cast(sum(interactions) over (partition by entity order by reviews) as decimal(18, 6))
        / sum(interactions) over (partition by entity),
        4
    ) as cumulative_interactions_share
from distribution
order by entity, reviews
