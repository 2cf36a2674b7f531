-- Every row of the app's likes (stg_app_likes) is exactly once in int_app_likes, and every kept
-- like is exactly one interaction of source 'app_like' (its user_id and product_key), none
-- missing and none invented: the likes' side of assert_every_line_accounted_for.
with

read_rows as (
    select count(*) as n from {{ ref('stg_app_likes') }}
),

checked_rows as (
    select count(*) as n from {{ ref('int_app_likes') }}
),

kept as (
    select
        user_id,
        product_key
    from {{ ref('int_app_likes') }}
    where reject_reason is null
),

liked as (
    select
        user_id,
        product_key
    from {{ ref('interactions') }}
    where source = 'app_like'
),

problems as (
    select
        cast(null as varchar) as user_id,
        cast(null as varchar) as product_key,
        'int_app_likes does not hold every like once' as problem
    from read_rows
    cross join checked_rows
    where read_rows.n <> checked_rows.n
    union all
    select
        kept.user_id,
        kept.product_key,
        'kept like without its interaction' as problem
    from kept
    where
        not exists (
            select 1 from liked
            where liked.user_id = kept.user_id and liked.product_key = kept.product_key
        )
    union all
    select
        liked.user_id,
        liked.product_key,
        'app_like interaction without a kept like' as problem
    from liked
    where not exists (
        select 1 from kept
        where kept.user_id = liked.user_id and kept.product_key = liked.product_key
    )
)

select * from problems
