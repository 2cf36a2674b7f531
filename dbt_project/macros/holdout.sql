{#- The per-user holdout rule shared by the valid split and the tune slice, so both are the same
    rule by construction. Portable: md5 of a key string on both engines, never random(). -#}

{#- Rank of each (user_id, video_id) row within its user, in the order of md5(seed|user|video). -#}
{% macro holdout_draw_rank(seed) -%}
    row_number() over (
        partition by user_id
        order by
            md5('{{ seed }}|' || user_id || '|' || cast(video_id as varchar)),
            cast(video_id as varchar)
    )
{%- endmacro %}

{#- How many of a user's n rows are held out: round(n * fraction), at least 1 and at most n - 1;
    none when n < 2 (a user with one row keeps it). -#}
{% macro holdout_count(n, fraction) -%}
    case
        when {{ n }} < 2 then 0
        else least({{ n }} - 1, greatest(1, floor({{ n }} * {{ fraction }} + 0.5)))
    end
{%- endmacro %}
