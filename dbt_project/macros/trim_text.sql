{#- Trim the same characters on every engine: var('trim_codepoints') (spaces, tabs, line breaks,
    the Unicode space separators such as U+3000 and U+00A0, the BOM). Bare trim() differs:
    Postgres removes only U+0020, DuckDB also the Unicode spaces but not tabs. The anonymizer
    (trainer/ingest/anonymize.py) reads the same var, so a hashed id is trimmed as staging trims. -#}

{% macro trim_characters() -%}
    ({% for code in var('trim_codepoints') %}chr({{ code }}){% if not loop.last %} || {% endif %}{% endfor %})
{%- endmacro %}

{% macro trim_text(expr) -%}
    {{ return(adapter.dispatch('trim_text', 'reviews_two_tower')(expr)) }}
{%- endmacro %}

{% macro default__trim_text(expr) -%}
    trim({{ expr }}, {{ trim_characters() }})
{%- endmacro %}

{% macro postgres__trim_text(expr) -%}
    btrim({{ expr }}, {{ trim_characters() }})
{%- endmacro %}
