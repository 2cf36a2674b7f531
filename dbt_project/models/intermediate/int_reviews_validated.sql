{#- One reject reason per line, checked in this order (the first failing check names the line). -#}

with

reviews as (
    select * from {{ ref('stg_reviews') }}
),

validated as (
    select
        *,
        case
            when product_url is null then 'missing_product_url'
            when not {{ regexp_test('lower(product_url)', '^https?://[^/ ]+') }}
                then 'invalid_product_url'
            when {{ byte_length('product_url') }} > {{ var('max_url_bytes') }}
                then 'product_url_too_long'
            when reviewer_id is null then 'missing_reviewer_id'
            when {{ byte_length('reviewer_id') }} > {{ var('max_reviewer_id_bytes') }}
                then 'reviewer_id_too_long'
            -- the app users' key space (the app_user_key macro): no reviewer may sit in it
            when reviewer_id like 'app:%' then 'reserved_reviewer_id'
            when stars_text is null then 'missing_stars'
            when stars_value is null then 'stars_not_numeric'
            when stars_value <> floor(stars_value) then 'stars_not_integer'
            when stars_value < 1 or stars_value > 5 then 'stars_out_of_range'
        end as reject_reason
    from reviews
)

select * from validated
