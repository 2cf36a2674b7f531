{#- One row per reviewer x video: the kept review, its binary label and the brief's weight. -#}

with

reviews as (
    select * from {{ ref('int_reviews_deduped') }}
    where duplicate_reason is null
),

catalog as (
    select * from {{ ref('int_video_catalog') }}
),

interactions as (
    select
        reviews.user_id,
        catalog.video_id,
        reviews.product_key,
        reviews.stars,
        reviews.stars >= {{ var('positive_min_stars') }} as label,
        cast(reviews.stars as double precision) / 5 as weight,
        reviews.line_number as source_line_number
    from reviews
    inner join catalog
        on reviews.product_key = catalog.product_key
)

select * from interactions
