with

interactions as (
    select * from {{ ref('interactions') }}
    where source = 'review'
),

distribution as (
    select
        stars,
        count(*) as interactions,
        round(cast(count(*) as decimal(18, 6)) / sum(count(*)) over (), 4) as share
    from interactions
    group by stars
)

select * from distribution
order by stars
