with

source as (
    select * from {{ source('app', 'videos') }}
),

renamed as (
    select
        id as video_id,
        product_url,
        created_at,
        {{ product_key('product_url') }} as product_key
    from source
)

select * from renamed
