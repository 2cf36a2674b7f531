{#- The tail of a per-entity activity CTE (columns interactions, positives) grouped into
    buckets 1, 2, 3-5, 6-10, 11-50, 51+, with counts and shares. Shared by the user and video
    quality models so their buckets always agree. -#}
{% macro activity_buckets(relation, entity) -%}
, bucketed as (
    select
        case
            when interactions = 1 then 1
            when interactions = 2 then 2
            when interactions <= 5 then 3
            when interactions <= 10 then 4
            when interactions <= 50 then 5
            else 6
        end as bucket_order,
        interactions,
        positives
    from {{ relation }}
)

select
    bucket_order,
    case bucket_order
        when 1 then '1'
        when 2 then '2'
        when 3 then '3-5'
        when 4 then '6-10'
        when 5 then '11-50'
        else '51+'
    end as interactions_bucket,
    count(*) as {{ entity }},
    round(cast(count(*) as decimal(18, 6)) / sum(count(*)) over (), 4) as share,
    cast(sum(interactions) as bigint) as interactions,
    cast(sum(positives) as bigint) as positives
from bucketed
group by bucket_order
order by bucket_order
{%- endmacro %}
