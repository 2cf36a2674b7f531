{#- One row per user x video: the kept review, its binary label and the brief's weight, and,
    when var('app_likes_table') names the app's likes, every kept like as a positive of weight 1
    (no stars). source tells them apart. -#}

with

reviews as (
    select * from {{ ref('int_reviews_deduped') }}
    where duplicate_reason is null
),

likes as (
    select * from {{ ref('int_app_likes') }}
    where reject_reason is null
),

catalog as (
    select * from {{ ref('int_video_catalog') }}
),

reviewed as (
    select
        reviews.user_id,
        catalog.video_id,
        reviews.product_key,
        reviews.stars,
        reviews.stars >= {{ var('positive_min_stars') }} as label,
        cast(reviews.stars as double precision) / 5 as weight,
        reviews.line_number as source_line_number,
        'review' as source
    from reviews
    inner join catalog
        on reviews.product_key = catalog.product_key
),

liked as (
    select
        likes.user_id,
        catalog.video_id,
        likes.product_key,
        cast(null as integer) as stars,
        true as label,
        cast(1 as double precision) as weight,
        cast(null as bigint) as source_line_number,
        'app_like' as source
    from likes
    inner join catalog
        on likes.product_key = catalog.product_key
),

interactions as (
    select * from reviewed
    union all
    select * from liked
)

select * from interactions
