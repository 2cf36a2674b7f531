{#- ANN indexes for the embedding tables (pgvector), rebuilt after every publish: ivfflat
    centroids are k-means of one embedding space, so an index built for last week's model
    answers this week's queries badly. The Python publish (trainer/backends/postgres/ann.py) applies
    the same rules inside its publish transaction (tests/dbt/test_models_postgres.py checks that both
    give the same lists, probes, ef_search and memory; tests/backends/test_postgres_publish.py runs this
    macro against a real Postgres).

    dbt run-operation rebuild_vector_index --args '{relation: public.video_embeddings}' --target postgres
    dbt run-operation rebuild_vector_index --args '{relation: public.video_embeddings, method: hnsw}' --target postgres

    Readers keep a working index throughout: the new index is built under a temporary name,
    then the old one is dropped and the new one renamed, in one transaction.

    video_embeddings is a view: the index goes on the slot table it reads (video_embeddings_a
    or _b, sql/postgres/002_tables.sql), named after it. There the index is on the expression
    the serving functions order by: the
    first N dimensions, N read from recommend_videos (sql/postgres/003_functions.sql; the
    published model's dimension, the rest of the column is zero padding). Other tables get
    an index on the whole column. -#}

{#- lists: rows / 1000 up to 1M rows, sqrt(rows) above; at least 10 (pgvector's guidance). -#}
{% macro ivfflat_lists(rows) -%}
    {%- set rows = rows | int -%}
    {%- if rows <= 1000000 -%}
        {%- set lists = (rows // 1000) -%}
    {%- else -%}
        {%- set lists = (rows ** 0.5) | int -%}
    {%- endif -%}
    {{- return([lists, 10] | max) -}}
{%- endmacro %}

{#- probes: lists searched per query. sqrt(lists) is pgvector's starting point. recommend_videos:
    4 * sqrt(lists) (at least 10, at most lists) measured recall@10 0.96-0.98 against exact
    search on trained two-tower embeddings at 107k videos (benchmarks/postgres_bench.py --sweep;
    0.94-0.96 at 3 * sqrt, too close to the 0.95 target). similar_videos: 6 * sqrt(lists)
    (item-to-item queries need more: 0.88-0.89 at 3x, 0.95-0.96 at 5x, 0.98 at 6x). Iterative
    scans add probes when filters (reviewed videos) leave too few rows. -#}
{% macro ivfflat_probes(lists, factor=4) -%}
    {%- set lists = lists | int -%}
    {%- set root = lists ** 0.5 -%}
    {%- set probes = (factor * root) | round(0, 'ceil') | int -%}
    {{- return([[probes, 10] | max, lists] | min) -}}
{%- endmacro %}

{% macro ivfflat_similar_probes(lists) -%}
    {{- return(ivfflat_probes(lists, 6)) -}}
{%- endmacro %}

{#- hnsw.ef_search: candidates kept per query (recall@10 0.89 at 100, 0.95 at 200, 0.97 at 400
    on the same embeddings). -#}
{% macro hnsw_ef_search() -%}
    {{- return(400) -}}
{%- endmacro %}

{#- maintenance_work_mem for the build, in MB: enough to hold the vectors (and the hnsw graph)
    in memory, between 64 MB and 2 GB. -#}
{% macro vector_index_memory_mb(rows, dim) -%}
    {%- set needed = ((rows | int) * ((dim | int) * 4 + 256) * 2) // 1048576 + 1 -%}
    {{- return([[needed, 64] | max, 2048] | min) -}}
{%- endmacro %}

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
        "select coalesce((select min(t.relname) from pg_rewrite as r join pg_depend as d"
        ~ " on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid join pg_class as t"
        ~ " on t.oid = d.refobjid and t.relkind = 'r' and t.oid <> r.ev_class"
        ~ " where r.ev_class = to_regclass('" ~ adapter.quote(schema_name) ~ '.'
        ~ adapter.quote(named) ~ "')), '" ~ named ~ "')"
    ).columns[0].values()[0] -%}
    {%- set serving = named == 'video_embeddings' or table_name.startswith('video_embeddings_') -%}
    {%- set qualified = adapter.quote(schema_name) ~ '.' ~ adapter.quote(table_name) -%}
    {%- set index_name = table_name ~ '_' ~ column ~ '_ann' -%}
    {%- set stats = run_query(
        "select count(*), (select format_type(atttypid, atttypmod) from pg_attribute"
        ~ " where attrelid = '" ~ qualified ~ "'::regclass and attname = '" ~ column ~ "')"
        ~ ", (select extnamespace::regnamespace::text from pg_extension where extname = 'vector')"
        ~ ", (select substring(prosrc from 'subvector\\(e\\.embedding, 1, (\\d+)\\)') from pg_proc"
        ~ " where oid = to_regprocedure('" ~ adapter.quote(schema_name)
        ~ ".recommend_videos(text, integer)'))"
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
    {%- set memory_mb = vector_index_memory_mb(rows, dim) -%}
    {%- if method == 'ivfflat' -%}
        {%- set lists = ivfflat_lists(rows) -%}
        {%- set with_clause = 'with (lists = ' ~ lists ~ ')' -%}
        {%- set tuning = 'set ivfflat.probes = ' ~ ivfflat_probes(lists) -%}
        {%- set similar_tuning = 'set ivfflat.probes = ' ~ ivfflat_similar_probes(lists) -%}
    {%- else -%}
        {%- set with_clause = 'with (m = 16, ef_construction = 64)' -%}
        {%- set tuning = 'set hnsw.ef_search = ' ~ hnsw_ef_search() -%}
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
        alter function {{ adapter.quote(schema_name) }}.recommend_videos(text, integer) {{ tuning }};
        alter function {{ adapter.quote(schema_name) }}.similar_videos(uuid, integer) {{ similar_tuning }};
        {%- endif %}
        analyze {{ qualified }};
    {% endcall %}
    {% do adapter.commit() %}
    {{ log("rebuilt " ~ method ~ " index " ~ index_name ~ " on " ~ qualified ~ " (" ~ rows
           ~ " rows; " ~ with_clause ~ "; " ~ tuning ~ ")", info=true) }}
{%- endmacro %}
