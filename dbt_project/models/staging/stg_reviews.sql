with

source as (
    select * from {{ source('raw', 'reviews') }}
),

renamed as (
    select
        line_number,
        product_url as raw_product_url,
        reviewer_id as raw_reviewer_id,
        stars as raw_stars,
        nullif({{ trim_text('product_url') }}, '') as product_url,
        nullif({{ trim_text('reviewer_id') }}, '') as reviewer_id,
        nullif({{ trim_text('stars') }}, '') as stars_text,
        {{ parse_decimal('stars') }} as stars_value,
        {{ product_key('product_url') }} as product_key
    from source
)

select * from renamed
