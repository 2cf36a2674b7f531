{{ config(materialized='table') }}

{#- Every reviewed or app-liked product with its video id: the app's id when the product is
    registered in videos (earliest row when several spellings are), else an id derived from
    product_key. The publish registers the unregistered ones, after the gate
    (marts/video_catalog). A liked product is registered already (a like names a videos row);
    its spelling counts only when no review names the product. -#}

with

reviewed_spellings as (
    select
        product_key,
        product_url,
        count(*) as reviews,
        min(line_number) as first_line
    from {{ ref('int_reviews_deduped') }}
    where duplicate_reason is null
    group by product_key, product_url
),

liked_spellings as (
    select distinct
        videos.product_key,
        videos.product_url,
        0 as reviews,
        cast(null as bigint) as first_line
    from {{ ref('int_app_likes') }} as likes
    inner join {{ ref('stg_videos') }} as videos
        on likes.liked_video_id = videos.video_id
    where likes.reject_reason is null
),

spellings as (
    select * from reviewed_spellings
    union all
    select * from liked_spellings
),

usual_spelling as (
    select
        product_key,
        product_url,
        row_number() over (
            partition by product_key
            order by reviews desc, first_line asc nulls last, product_url asc
        ) as spelling_rank
    from spellings
),

registered as (
    select
        product_key,
        video_id,
        product_url,
        row_number() over (
            partition by product_key
            order by created_at asc nulls last, cast(video_id as varchar) asc
        ) as registration_rank
    from {{ ref('stg_videos') }}
    where product_key is not null
),

catalog as (
    select
        usual_spelling.product_key,
        coalesce(
            registered.video_id,
            {{ uuid_from_key("'video:' || usual_spelling.product_key") }}
        ) as video_id,
        coalesce(registered.product_url, usual_spelling.product_url) as product_url,
        registered.video_id is not null as is_registered
    from usual_spelling
    left join registered
        on
            usual_spelling.product_key = registered.product_key
            and registered.registration_rank = 1
    where usual_spelling.spelling_rank = 1
)

select * from catalog
