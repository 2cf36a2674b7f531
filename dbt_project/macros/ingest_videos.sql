{#- Post-hook of int_video_catalog: registers reviewed products that the app's videos table lacks,
    as minimal rows with ids derived from product_key. `on conflict do nothing` makes re-runs and
    concurrent app inserts harmless. Off with --vars '{ingest_videos: false}'. -#}
{% macro ingest_videos(catalog_relation) -%}
    {%- if var('ingest_videos') -%}
        insert into {{ source('app', 'videos') }} (id, product_url, created_at)
        select video_id, product_url, current_timestamp
        from {{ catalog_relation }}
        where not is_registered
        order by video_id
        on conflict do nothing
    {%- else -%}
        select 1 as ingest_disabled
    {%- endif -%}
{%- endmacro %}
