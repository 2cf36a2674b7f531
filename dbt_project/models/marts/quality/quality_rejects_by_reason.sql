with

rejects as (
    select * from {{ ref('review_rejects') }}
),

by_reason as (
    select
        stage,
        reason,
        count(*) as lines,
        min(line_number) as first_line
    from rejects
    group by stage, reason
)

select * from by_reason
order by lines desc, stage asc, reason asc
