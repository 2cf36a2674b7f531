{#- ANN indexes for the embedding tables (pgvector), rebuilt after every publish: ivfflat
    centroids are k-means of one embedding space, so an index built for last week's model
    answers this week's queries badly. The Python publish (trainer/backends/postgres/ann.py) does
    the same inside its publish transaction; both take the sizing rules (lists, probes,
    ef_search, build memory), the indexed dimensions and the active slot from the SQL functions
    of sql/postgres/003_functions.sql (public.ann_*, public.embedding_slot), their one home, so
    the two cannot disagree. tests/backends/test_postgres_ann.py runs this macro against a
    real Postgres.

    dbt run-operation rebuild_vector_index --args '{relation: public.video_embeddings}' --target postgres
    dbt run-operation rebuild_vector_index --args '{relation: public.video_embeddings, method: hnsw}' --target postgres

    Readers keep a working index throughout: the new index is built under a temporary name,
    then the old one is dropped and the new one renamed, in one transaction.

    video_embeddings is a view: the index goes on the slot table it reads (video_embeddings_a
    or _b, sql/postgres/002_tables.sql), named after it. There the index is on the expression
    the serving functions order by: the first ann_dim() dimensions (the published model's; the
    rest of the column is zero padding). Other tables get an index on the whole column. -#}

{% macro rebuild_vector_index(relation, method='ivfflat', column='embedding') -%}
    {{ return(adapter.dispatch('rebuild_vector_index', 'reviews_two_tower')(relation, method, column)) }}
{%- endmacro %}

{% macro default__rebuild_vector_index(relation, method, column) -%}
    {{ exceptions.raise_compiler_error(
        "rebuild_vector_index needs pgvector; target type " ~ target.type ~ " has no ANN index"
    ) }}
{%- endmacro %}

{#- DuckDB scans exactly (array_cosine_distance): there is no index to keep fresh. -#}
{% macro duckdb__rebuild_vector_index(relation, method, column) -%}
    {{ log("duckdb: exact search, no vector index to rebuild for " ~ relation, info=true) }}
{%- endmacro %}

{% macro postgres__rebuild_vector_index(relation, method, column) -%}
    {%- if method not in ('ivfflat', 'hnsw') -%}
        {{ exceptions.raise_compiler_error("method must be ivfflat or hnsw, got " ~ method) }}
    {%- endif -%}
    {%- set parts = (relation | string).replace('"', '').split('.') -%}
    {%- set schema_name = parts[-2] if parts | length > 1 else target.schema -%}
    {%- set named = parts[-1] -%}
    {#- A view (video_embeddings: over the slot a publish filled) is indexed through the one
        table it reads. -#}
    {%- set table_name = run_query(
        "select coalesce(public.embedding_slot('" ~ named ~ "'), '" ~ named ~ "')"
    ).columns[0].values()[0] -%}
    {%- set serving = named == 'video_embeddings' or table_name.startswith('video_embeddings_') -%}
    {%- set qualified = adapter.quote(schema_name) ~ '.' ~ adapter.quote(table_name) -%}
    {%- set index_name = table_name ~ '_' ~ column ~ '_ann' -%}
    {%- set stats = run_query(
        "select count(*), (select format_type(atttypid, atttypmod) from pg_attribute"
        ~ " where attrelid = '" ~ qualified ~ "'::regclass and attname = '" ~ column ~ "')"
        ~ ", (select extnamespace::regnamespace::text from pg_extension where extname = 'vector')"
        ~ ", public.ann_dim()"
        ~ " from " ~ qualified
    ) -%}
    {%- set rows = stats.columns[0].values()[0] | int -%}
    {%- set dim = modules.re.search('\\((\\d+)\\)', stats.columns[1].values()[0]).group(1) | int -%}
    {%- set vector_schema = stats.columns[2].values()[0] -%}
    {%- set ann_dim = stats.columns[3].values()[0] -%}
    {%- if serving and column == 'embedding' and ann_dim -%}
        {%- set indexed = '(' ~ vector_schema ~ '.subvector(' ~ adapter.quote(column) ~ ', 1, '
            ~ ann_dim ~ ')::' ~ vector_schema ~ '.vector(' ~ ann_dim ~ '))' -%}
    {%- else -%}
        {%- set indexed = adapter.quote(column) -%}
    {%- endif -%}
    {%- set rules = run_query(
        "select public.ann_index_memory_mb(" ~ rows ~ ", " ~ dim ~ "), public.ann_ivfflat_lists("
        ~ rows ~ "), public.ann_ivfflat_probes(public.ann_ivfflat_lists(" ~ rows ~ "), 4)"
        ~ ", public.ann_ivfflat_probes(public.ann_ivfflat_lists(" ~ rows ~ "), 6)"
        ~ ", public.ann_hnsw_ef_search()"
    ) -%}
    {%- set memory_mb = rules.columns[0].values()[0] | int -%}
    {%- if method == 'ivfflat' -%}
        {%- set with_clause = 'with (lists = ' ~ (rules.columns[1].values()[0] | int) ~ ')' -%}
        {%- set tuning = 'set ivfflat.probes = ' ~ (rules.columns[2].values()[0] | int) -%}
        {%- set similar_tuning = 'set ivfflat.probes = ' ~ (rules.columns[3].values()[0] | int) -%}
    {%- else -%}
        {%- set with_clause = 'with (m = 16, ef_construction = 64)' -%}
        {%- set tuning = 'set hnsw.ef_search = ' ~ (rules.columns[4].values()[0] | int) -%}
        {%- set similar_tuning = tuning -%}
    {%- endif -%}
    {% call statement('rebuild_vector_index', auto_begin=True) %}
        -- serialized with the trainer's publish (same advisory lock key)
        select pg_advisory_xact_lock({{ var('publish_lock_key', 4123577019) }});
        set local maintenance_work_mem = '{{ memory_mb }}MB';
        drop index if exists {{ adapter.quote(schema_name) }}.{{ adapter.quote(index_name ~ '_new') }};
        create index {{ adapter.quote(index_name ~ '_new') }} on {{ qualified }}
            using {{ method }} ({{ indexed }} {{ vector_schema }}.vector_cosine_ops)
            {{ with_clause }};
        drop index if exists {{ adapter.quote(schema_name) }}.{{ adapter.quote(index_name) }};
        alter index {{ adapter.quote(schema_name) }}.{{ adapter.quote(index_name ~ '_new') }}
            rename to {{ adapter.quote(index_name) }};
        {%- if serving %}
        alter function {{ adapter.quote(schema_name) }}.recommend_videos(text, integer, uuid[]) {{ tuning }};
        alter function {{ adapter.quote(schema_name) }}.similar_videos(uuid, integer, uuid[]) {{ similar_tuning }};
        alter function {{ adapter.quote(schema_name) }}.recommend_for_likes(uuid[], integer, uuid[]) {{ tuning }};
        {%- endif %}
        analyze {{ qualified }};
    {% endcall %}
    {% do adapter.commit() %}
    {{ log("rebuilt " ~ method ~ " index " ~ index_name ~ " on " ~ qualified ~ " (" ~ rows
           ~ " rows; " ~ with_clause ~ "; " ~ tuning ~ ")", info=true) }}
{%- endmacro %}
