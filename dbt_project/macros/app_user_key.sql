{#- The user_id of an app user in the marts: 'app:' and their auth uid as text. Reviewer ids can
    never take this form (int_reviews_validated rejects a reviewer id that starts with 'app:' as
    reserved_reviewer_id; anonymized ones are hex digits), so the two never collide. The uid is
    not hashed even when reviewer ids are: it is the app's own pseudonymous id, and
    recommend_for_me / my_model_version (sql/postgres/003_functions.sql) must find the same key
    from the JWT's sub claim without any secret. -#}
{% macro app_user_key(uid) -%}
    'app:' || {{ uid }}
{%- endmacro %}


{#- A setting of the app-likes source: the var when set, else the environment variable
    (APP_LIKES_TABLE, APP_LIKES_USER_COLUMN, APP_LIKES_VIDEO_COLUMN), else the default. The
    source's identifier in _sources.yml repeats the table's rule (yml cannot call macros). -#}
{% macro app_likes_setting(name) -%}
    {%- set defaults = {'table': '', 'user_column': 'user_id', 'video_column': 'video_id'} -%}
    {{ return(var('app_likes_' ~ name) or env_var('APP_LIKES_' ~ name | upper, '') or defaults[name]) }}
{%- endmacro %}
