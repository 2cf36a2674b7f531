-- 001: pgvector.
--
-- Placeholders (filled by `python -m trainer migrate --target postgres`, which calls
-- PostgresWarehouse.ensure_app_schema; see trainer/backends/postgres/migrations.py:render_migrations):
--   {dim}            the embedding columns' dimension (256 by default)
--   {marts_schema}   the schema of the dbt marts (profiles.yml `schema`: PGSCHEMA, default recsys)
--   {vector_schema}  where pgvector lives (Supabase: `extensions`; elsewhere usually public)
-- Every file is idempotent: applying the whole set again changes nothing. The set is applied in
-- one transaction under an advisory lock, so two migrators never interleave.
--
-- Supabase creates extensions in the `extensions` schema (what Dashboard -> Database -> Extensions
-- does); plain Postgres puts it in the first schema of the search_path. Creating it needs a
-- superuser (pgvector is not a trusted extension) unless it is already there.
do $$
begin
    if not exists (select 1 from pg_catalog.pg_extension where extname = 'vector') then
        if exists (select 1 from pg_catalog.pg_namespace where nspname = 'extensions') then
            create extension if not exists vector with schema extensions;
        else
            create extension if not exists vector;
        end if;
    end if;
end
$$;
