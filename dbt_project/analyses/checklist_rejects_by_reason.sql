-- Checklist: where the dirt was. Rejected records per stage (load, validate, dedupe) and reason,
-- their share of all records of the load (interactions + review_rejects: every record ends up in
-- exactly one of them), and the first rejected record as an example. Reviewer ids are left out
-- of the example; look the line up in review_rejects when it matters.
with

rejects as (
    select * from {{ ref('review_rejects') }}
),

records as (
    select
        (select count(*) from {{ ref('interactions') }})
        + (select count(*) from rejects) as all_records
),

by_reason as (
    select
        stage,
        reason,
        count(*) as rejected_records,
        min(line_number) as first_line
    from rejects
    group by stage, reason
)

select
    by_reason.stage,
    by_reason.reason,
    by_reason.rejected_records,
    round(
        cast(by_reason.rejected_records as decimal(18, 6)) / nullif(records.all_records, 0), 4
    ) as share_of_records,
    by_reason.first_line,
    example.raw_line as example_raw_line,
    example.product_url as example_product_url,
    example.stars as example_stars
from by_reason
cross join records
inner join rejects as example
    on by_reason.first_line = example.line_number
order by by_reason.rejected_records desc, by_reason.stage asc, by_reason.reason asc
