-- Only positives are split; every positive is split exactly once.
select
    interactions.user_id,
    interactions.video_id
from {{ ref('interactions') }} as interactions
left join {{ ref('interaction_splits') }} as splits
    on interactions.user_id = splits.user_id and interactions.video_id = splits.video_id
where interactions.label <> (splits.user_id is not null)
