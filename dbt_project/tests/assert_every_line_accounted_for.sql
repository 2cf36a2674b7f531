-- Every data line of the load (lines 2 .. data_lines + 1; the header is line 1, see
-- trainer/ingest/load.py) is exactly once in raw.reviews + raw.load_rejects and exactly once in
-- interactions.source_line_number + review_rejects.line_number: none missing, none twice, none
-- that is not a data line. The load's rejects are the review_rejects of stage 'load'. raw.loads
-- must describe exactly one load with at least one data line, else this fails too.
--
-- A record may span lines (an RFC 4180 quoted field with line breaks): its raw row or load reject
-- covers line_number .. last_line_number, and so does every mart row that comes from it (found by
-- its first line).
with

load_summary as (
    select
        count(*) as loads,
        min(data_lines) as data_lines
    from {{ source('raw', 'loads') }}
),

bad_load as (
    select
        'load' as layer,
        cast(null as bigint) as line_number,
        'raw.loads does not hold exactly one load with data lines' as problem
    from load_summary
    where loads <> 1 or data_lines is null or data_lines < 1
),

file_lines as (
    select cast(lines.line_number as bigint) as line_number
    from load_summary
    cross join lateral generate_series(2, load_summary.data_lines + 1) as lines (line_number)
    where load_summary.loads = 1
),

layers as (
    select 'raw' as layer
    union all
    select 'marts' as layer
),

expected as (
    select
        layers.layer,
        file_lines.line_number
    from layers
    cross join file_lines
),

raw_starts as (
    select
        line_number,
        last_line_number
    from {{ source('raw', 'reviews') }}
    union all
    select
        line_number,
        last_line_number
    from {{ source('raw', 'load_rejects') }}
),

-- where each record ends, by its first line (one span per first line, even if the raw tables
-- repeat one: that repeat is reported in the raw layer, not again in the marts)
spans as (
    select
        line_number,
        max(last_line_number) as last_line_number
    from raw_starts
    group by line_number
),

starts as (
    select
        'raw' as layer,
        line_number
    from raw_starts
    union all
    select
        'marts' as layer,
        source_line_number as line_number
    from {{ ref('interactions') }}
    where source = 'review'
    union all
    select
        'marts' as layer,
        line_number
    from {{ ref('review_rejects') }}
),

placed as (
    select
        starts.layer,
        cast(covered.line_number as bigint) as line_number
    from starts
    left join spans on starts.line_number = spans.line_number
    cross join lateral generate_series(
        starts.line_number, coalesce(spans.last_line_number, starts.line_number)
    ) as covered (line_number)
),

counted as (
    select
        layer,
        line_number,
        count(*) as times
    from placed
    group by layer, line_number
),

misplaced as (
    select
        coalesce(expected.layer, counted.layer) as layer,
        coalesce(expected.line_number, counted.line_number) as line_number,
        case
            when counted.line_number is null then 'data line missing'
            when expected.line_number is null then 'not a data line of the load'
            else 'data line present ' || cast(counted.times as varchar) || ' times'
        end as problem
    from expected
    full outer join counted
        on
            expected.layer = counted.layer
            and expected.line_number = counted.line_number
    where
        counted.line_number is null
        or expected.line_number is null
        or counted.times <> 1
),

load_reject_not_at_load as (
    select
        'marts' as layer,
        load_rejects.line_number,
        'load reject not in review_rejects at stage load' as problem
    from {{ source('raw', 'load_rejects') }} as load_rejects
    where not exists (
        select 1 from {{ ref('review_rejects') }} as rejects
        where rejects.line_number = load_rejects.line_number and rejects.stage = 'load'
    )
),

at_load_not_a_load_reject as (
    select
        'marts' as layer,
        rejects.line_number,
        'review_rejects stage load without a load reject' as problem
    from {{ ref('review_rejects') }} as rejects
    where
        rejects.stage = 'load'
        and not exists (
            select 1 from {{ source('raw', 'load_rejects') }} as load_rejects
            where load_rejects.line_number = rejects.line_number
        )
)

select * from bad_load
union all
select * from misplaced
union all
select * from load_reject_not_at_load
union all
select * from at_load_not_a_load_reject
