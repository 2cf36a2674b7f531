{#- The app's likes, renamed and cast: one row per row of var('app_likes_table'), nothing
    filtered (the app_likes_setting macro names the table and columns). Off (no table named): no rows, with the same columns, so every downstream model
    builds the same way with or without likes. -#}

{%- if app_likes_setting('table') %}

    with

    source as (
        select * from {{ source('app', 'likes') }}
    ),

    renamed as (
        select
            cast({{ adapter.quote(app_likes_setting('user_column')) }} as varchar) as app_user_id,
            cast({{ adapter.quote(app_likes_setting('video_column')) }} as uuid) as video_id
        from source
    )

    select * from renamed

{%- else %}

    select
        cast(null as varchar) as app_user_id,
        cast(null as uuid) as video_id
    where false

{%- endif %}
