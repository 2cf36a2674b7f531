-- A negative sample is never a video its user reviewed (with any stars), and its positive is a
-- train positive of the same user.
select
    negatives.user_id,
    negatives.video_id,
    'negative was reviewed' as problem
from {{ ref('negative_samples') }} as negatives
inner join {{ ref('interactions') }} as reviewed
    on negatives.user_id = reviewed.user_id and negatives.video_id = reviewed.video_id

union all

select
    negatives.user_id,
    negatives.positive_video_id,
    'positive is not a train positive' as problem
from {{ ref('negative_samples') }} as negatives
left join {{ ref('interaction_splits') }} as splits
    on
        negatives.user_id = splits.user_id
        and negatives.positive_video_id = splits.video_id
        and splits.split = 'train'
where splits.user_id is null
