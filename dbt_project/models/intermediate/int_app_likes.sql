{{ config(materialized='table') }}

{#- Every app like with its reject_reason (null when it becomes an interaction), checked in a fixed
    order: missing_app_user_id, missing_video_id, unknown_video (not a row of the app's videos, or
    one without a product URL), then duplicate (the same user and product_key liked again: one
    like per user x video, as one review per reviewer x video). user_id is the app_user_key, the
    id the user has in every mart. -#}

with

likes as (
    select * from {{ ref('stg_app_likes') }}
),

videos as (
    select * from {{ ref('stg_videos') }}
),

checked as (
    select
        likes.app_user_id,
        likes.video_id as liked_video_id,
        videos.product_key,
        case
            when likes.app_user_id is null then 'missing_app_user_id'
            when likes.video_id is null then 'missing_video_id'
            when videos.product_key is null then 'unknown_video'
        end as invalid_reason
    from likes
    left join videos
        on likes.video_id = videos.video_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by invalid_reason, app_user_id, product_key
            order by cast(liked_video_id as varchar)
        ) as like_rank
    from checked
)

select
    app_user_id,
    {{ app_user_key('app_user_id') }} as user_id,
    liked_video_id,
    product_key,
    case
        when invalid_reason is not null then invalid_reason
        when like_rank > 1 then 'duplicate'
    end as reject_reason
from ranked
