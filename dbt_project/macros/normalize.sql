{#- The canonical key of a product page, shared by reviews and the app's videos table.
    DMM pages carry their product id as cid=...: every spelling of the page (http/https, with or
    without www or another dmm subdomain, tracking query strings, trailing slashes, case) has the
    same cid, so the key is 'dmm:' || cid. Only a DMM host (dmm.co.jp, dmm.com and their
    subdomains) gives a dmm: key: any other site's cid=... is that site's business, and a scrape
    with such lines must not be able to claim (and rename) a DMM product. Every other page falls
    back to the URL without scheme, www., query, fragment and trailing slashes, lowercased. -#}
{% macro product_key(url) -%}
    {%- set lowered = 'lower(' ~ trim_text(url) ~ ')' -%}
    case
        when {{ regexp_test(lowered, dmm_host_pattern()) }}
            and {{ regexp_group(lowered, 'cid=([a-z0-9_]+)') }} is not null
            then 'dmm:' || {{ regexp_group(lowered, 'cid=([a-z0-9_]+)') }}
        else {{ normalized_url(url) }}
    end
{%- endmacro %}

{#- An http(s) URL on dmm.co.jp or dmm.com (any subdomain, an optional port), lowercased. -#}
{% macro dmm_host_pattern() -%}
    ^https?://([a-z0-9-]+[.])*dmm[.](co[.]jp|com)(:[0-9]+)?([/?#]|$)
{%- endmacro %}

{% macro normalized_url(url) -%}
    nullif(
        regexp_replace(
            regexp_replace(
                regexp_replace(lower({{ trim_text(url) }}), '^https?://(www\.)?', ''),
                '[?#].*$', ''
            ),
            '/+$', ''
        ),
        ''
    )
{%- endmacro %}


{#- A decimal number from text, or null when the text is not one. The same regular expression
    decides on both engines, so '4.0', ' 5 ' and '+3' parse while '4,5', '1e1' and 'NaN' do not. -#}
{% macro parse_decimal(expr) -%}
    {{ return(adapter.dispatch('parse_decimal', 'reviews_two_tower')(expr)) }}
{%- endmacro %}

{% macro default__parse_decimal(expr) -%}
    case
        when {{ regexp_test(trim_text(expr), '^[+-]?[0-9]{1,9}([.][0-9]{1,9})?$') }}
            then cast({{ trim_text(expr) }} as decimal(18, 9))
    end
{%- endmacro %}

{#- Postgres numerics keep their scale ('4' as decimal(18, 9) is 4.000000000); trim_scale gives
    the same value with the scale it was written with (4, 4.5), so results read the same as
    DuckDB's and as the unit tests' expectations. -#}
{% macro postgres__parse_decimal(expr) -%}
    case
        when {{ regexp_test(trim_text(expr), '^[+-]?[0-9]{1,9}([.][0-9]{1,9})?$') }}
            then trim_scale(cast({{ trim_text(expr) }} as decimal(18, 9)))
    end
{%- endmacro %}
