{#- Every reviewed product as a video of the app, and whether the publish registers it.

    dbt writes nothing to the app's tables: registration happens in the publish transaction,
    after the gate (trainer/backends: DuckDB's publish_embeddings, Postgres's videos.py), so a
    rejected model adds no rows to videos. With var('ingest_videos') off, nothing is marked. -#}

select
    video_id,
    product_key,
    product_url,
    is_registered,
    {% if var('ingest_videos') | as_bool -%}
        not is_registered
    {%- else -%}
        false
    {%- endif %} as register_at_publish
from {{ ref('int_video_catalog') }}
