{#- Regular expressions differ by engine: Postgres has operators and substring(... from ...),
    DuckDB has RE2 functions. Patterns passed here must mean the same in both (no lookarounds). -#}

{% macro regexp_test(expr, pattern) -%}
    {{ return(adapter.dispatch('regexp_test', 'reviews_two_tower')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regexp_test(expr, pattern) -%}
    regexp_like({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regexp_test(expr, pattern) -%}
    ({{ expr }} ~ '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regexp_test(expr, pattern) -%}
    regexp_matches({{ expr }}, '{{ pattern }}')
{%- endmacro %}


{#- The first capture group of pattern in expr, or null when it does not match. -#}
{% macro regexp_group(expr, pattern) -%}
    {{ return(adapter.dispatch('regexp_group', 'reviews_two_tower')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regexp_group(expr, pattern) -%}
    regexp_substr({{ expr }}, '{{ pattern }}', 1, 1, 'c', 1)
{%- endmacro %}

{% macro postgres__regexp_group(expr, pattern) -%}
    substring({{ expr }} from '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__regexp_group(expr, pattern) -%}
    nullif(regexp_extract({{ expr }}, '{{ pattern }}', 1), '')
{%- endmacro %}
