{#- Deterministic pseudo-randomness that both engines compute bit for bit: md5 of a key string.
    Never random(): the same input must give the same splits and negatives on DuckDB and Postgres. -#}

{#- A non-negative 60-bit integer from the first 15 hex digits of md5(expr). -#}
{% macro hash_to_bigint(expr) -%}
    {{ return(adapter.dispatch('hash_to_bigint', 'reviews_two_tower')(expr)) }}
{%- endmacro %}

{% macro default__hash_to_bigint(expr) -%}
    cast(conv(substr(md5({{ expr }}), 1, 15), 16, 10) as bigint)
{%- endmacro %}

{% macro postgres__hash_to_bigint(expr) -%}
    ('x' || substr(md5({{ expr }}), 1, 15))::bit(60)::bigint
{%- endmacro %}

{% macro duckdb__hash_to_bigint(expr) -%}
    cast('0x' || substr(md5({{ expr }}), 1, 15) as bigint)
{%- endmacro %}


{#- A uuid that is a pure function of a key, so re-runs ingest the same ids (idempotent).
    md5's 32 hex digits cast to uuid the same way on both engines. -#}
{% macro uuid_from_key(expr) -%}
    cast(md5({{ expr }}) as uuid)
{%- endmacro %}
