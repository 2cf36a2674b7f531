with

source as (
    select * from {{ source('raw', 'load_rejects') }}
),

renamed as (
    select
        line_number,
        reason,
        raw_line
    from source
)

select * from renamed
