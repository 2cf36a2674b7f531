{{ config(materialized='table') }}

{#- Dedupe policy: one review per reviewer x product_key, and the line that comes last in the file
    wins (scrapes append as they crawl, so the later line is the later reading of the review).
    Superseded lines are kept with a reason: 'duplicate' when their stars equal the kept line's,
    'conflicting_duplicate' when they differ. -#}

with

valid_reviews as (
    select
        line_number,
        reviewer_id as user_id,
        product_key,
        product_url,
        cast(stars_value as integer) as stars
    from {{ ref('int_reviews_validated') }}
    where reject_reason is null
),

ranked as (
    select
        *,
        row_number() over (
            partition by user_id, product_key order by line_number desc
        ) as recency_rank
    from valid_reviews
),

kept as (
    select
        user_id,
        product_key,
        stars as kept_stars
    from ranked
    where recency_rank = 1
),

labelled as (
    select
        ranked.line_number,
        ranked.user_id,
        ranked.product_key,
        ranked.product_url,
        ranked.stars,
        case
            when ranked.recency_rank = 1 then null
            when ranked.stars = kept.kept_stars then 'duplicate'
            else 'conflicting_duplicate'
        end as duplicate_reason
    from ranked
    inner join kept
        on
            ranked.user_id = kept.user_id
            and ranked.product_key = kept.product_key
)

select * from labelled
