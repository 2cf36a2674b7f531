{#- The length of a text in bytes (UTF-8), the unit of Postgres's btree row limit: Postgres has
    octet_length, DuckDB's strlen counts bytes (its length counts characters). -#}

{% macro byte_length(expr) -%}
    {{ return(adapter.dispatch('byte_length', 'reviews_two_tower')(expr)) }}
{%- endmacro %}

{% macro default__byte_length(expr) -%}
    octet_length({{ expr }})
{%- endmacro %}

{% macro duckdb__byte_length(expr) -%}
    strlen({{ expr }})
{%- endmacro %}
