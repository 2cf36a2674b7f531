{#- Positive reviews per video: the popular ranking, the one place it is computed. Serving reads
    it for users without a vector (recommend on DuckDB, popular_videos on Postgres), and a publish
    to another database copies it there. Videos without a positive review are not in it. -#}

with

positives as (
    select
        video_id,
        count(*) as positives
    from {{ ref('interactions') }}
    where label
    group by video_id
)

select * from positives
