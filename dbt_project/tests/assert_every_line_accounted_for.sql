-- Every data line of the loaded file is either an interaction or a reject, exactly once.
with

counts as (
    select
        (select sum(data_lines) from {{ source('raw', 'loads') }}) as file_data_lines,
        (select count(*) from {{ source('raw', 'reviews') }}) as raw_rows,
        (select count(*) from {{ source('raw', 'load_rejects') }}) as load_rejects,
        (select count(*) from {{ ref('interactions') }}) as interactions,
        (select count(*) from {{ ref('review_rejects') }}) as rejects,
        (
            select count(*) from {{ ref('review_rejects') }}
            where stage = 'load'
        ) as rejects_at_load
)

select *
from counts
where
    file_data_lines <> raw_rows + load_rejects
    or file_data_lines <> interactions + rejects
    or rejects_at_load <> load_rejects
