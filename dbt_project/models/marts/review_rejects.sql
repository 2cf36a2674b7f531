{#- Every input line that is not in interactions, with the stage that set it aside and why.
    File data lines = interactions + review_rejects (see the reconciliation test). -#}

with

load_rejects as (
    select
        line_number,
        'load' as stage,
        reason,
        raw_line,
        cast(null as varchar) as product_url,
        cast(null as varchar) as reviewer_id,
        cast(null as varchar) as stars
    from {{ ref('stg_load_rejects') }}
),

invalid_rows as (
    select
        line_number,
        'validate' as stage,
        reject_reason as reason,
        cast(null as varchar) as raw_line,
        raw_product_url as product_url,
        raw_reviewer_id as reviewer_id,
        raw_stars as stars
    from {{ ref('int_reviews_validated') }}
    where reject_reason is not null
),

duplicates as (
    select
        deduped.line_number,
        'dedupe' as stage,
        deduped.duplicate_reason as reason,
        cast(null as varchar) as raw_line,
        reviews.raw_product_url as product_url,
        reviews.raw_reviewer_id as reviewer_id,
        reviews.raw_stars as stars
    from {{ ref('int_reviews_deduped') }} as deduped
    inner join {{ ref('stg_reviews') }} as reviews
        on deduped.line_number = reviews.line_number
    where deduped.duplicate_reason is not null
),

rejects as (
    select * from load_rejects
    union all
    select * from invalid_rows
    union all
    select * from duplicates
)

select * from rejects
