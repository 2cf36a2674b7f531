-- 004: grants and row level security, as a Supabase project expects them.
--
-- What each role may do (sql/postgres/README.md, "Roles"):
--
--   anon           read videos and popular_videos; execute similar_videos and
--                  recommend_for_likes (a visitor is known only by what they look at)
--   authenticated  the same, and recommend_for_me (their own recommendations, from their JWT)
--   service_role   read and write every table and view here (the trainer's publish, the app's
--                  server side); execute every function, recommend_videos included
--   public         nothing
--
-- Nobody but service_role (and the owner) reads user_embeddings, reviewed_videos (every
-- reviewer's history), model_runs or any slot table: the functions are security definer and
-- return only their answer, and recommend_videos, which takes any reviewer id, is service_role's.
--
-- Every run revokes everything on our tables, views and functions from the API roles and from
-- PUBLIC before it grants, so nothing survives that was granted by other means: a Supabase
-- project's default privileges give anon and authenticated ALL on every new public table
-- (REFERENCES, TRIGGER, TRUNCATE and MAINTAIN included, the last enough to take an exclusive
-- lock) and EXECUTE on every new function.
--
-- The functions read only public tables, so the API roles need nothing in the dbt marts schema
-- {marts_schema}; earlier versions granted them read access there, which is taken back below.
-- Keep that schema out of PostgREST's `db_schemas`.
--
-- The roles exist on Supabase; on plain Postgres grants and policies are made only for the
-- roles that exist, so the same files apply anywhere.

-- RLS on every table: a role that somehow gets a grant still sees no row without a policy.
alter table public.video_embeddings_a enable row level security;
alter table public.video_embeddings_b enable row level security;
alter table public.user_embeddings_a enable row level security;
alter table public.user_embeddings_b enable row level security;
alter table public.model_runs enable row level security;
alter table public.popular_videos enable row level security;
alter table public.reviewed_videos enable row level security;

do $$
declare
    ours_videos boolean := coalesce(
        obj_description('public.videos'::regclass, 'pg_class') like 'reviews_two_tower:%',
        false
    );
    -- tables and views; the views (video_embeddings, user_embeddings) read the slots as the
    -- caller (security_invoker), so service_role gets both
    relations text[] := array[
        'video_embeddings', 'video_embeddings_a', 'video_embeddings_b', 'user_embeddings',
        'user_embeddings_a', 'user_embeddings_b', 'model_runs', 'popular_videos',
        'reviewed_videos'
    ];
    tables text[] := array[
        'video_embeddings_a', 'video_embeddings_b', 'user_embeddings_a', 'user_embeddings_b',
        'model_runs', 'popular_videos', 'reviewed_videos'
    ];
    -- function -> the API roles that may execute it (service_role may execute all)
    functions jsonb := jsonb_build_object(
        'public.recommend_videos(text, integer, uuid[])', jsonb_build_array(),
        'public.recommend_for_me(integer, uuid[])', jsonb_build_array('authenticated'),
        'public.my_model_version()', jsonb_build_array('authenticated'),
        'public.my_user_id()', jsonb_build_array('authenticated'),
        'public.similar_videos(uuid, integer, uuid[])', jsonb_build_array('anon', 'authenticated'),
        'public.recommend_for_likes(uuid[], integer, uuid[])',
        jsonb_build_array('anon', 'authenticated'),
        -- the ANN rules (003): the trainer's and dbt's, not the app's
        'public.ann_ivfflat_lists(bigint)', jsonb_build_array(),
        'public.ann_ivfflat_probes(integer, integer)', jsonb_build_array(),
        'public.ann_hnsw_ef_search()', jsonb_build_array(),
        'public.ann_index_memory_mb(bigint, integer)', jsonb_build_array(),
        'public.ann_dim()', jsonb_build_array(),
        'public.embedding_slot(text)', jsonb_build_array()
    );
    -- the public tables the API roles read directly (nothing personal: videos and counts)
    readable text[] := array['popular_videos'];
    api_roles text[];
    api_role text;
    rel text;
    fn text;
begin
    -- The videos table gets our grants and policies only when migration 002 created it; an app's
    -- own videos table keeps its own security.
    if ours_videos then
        alter table public.videos enable row level security;
        relations := relations || 'videos'::text;
        tables := tables || 'videos'::text;
        readable := readable || 'videos'::text;
    end if;

    select coalesce(array_agg(rolname order by rolname), '{}') into api_roles
    from pg_catalog.pg_roles where rolname in ('anon', 'authenticated', 'service_role');

    -- 1. take everything back
    foreach rel in array relations loop
        execute format('revoke all on public.%I from public', rel);
        foreach api_role in array api_roles loop
            execute format('revoke all on public.%I from %I', rel, api_role);
        end loop;
    end loop;
    for fn in select jsonb_object_keys(functions) loop
        execute format('revoke all on function %s from public', fn);
        foreach api_role in array api_roles loop
            execute format('revoke all on function %s from %I', fn, api_role);
        end loop;
    end loop;
    -- policies of earlier versions that let the API roles read embeddings and histories
    foreach rel in array tables loop
        execute format('drop policy if exists anon_read on public.%I', rel);
        execute format('drop policy if exists authenticated_read on public.%I', rel);
        execute format('drop policy if exists service_role_write on public.%I', rel);
    end loop;

    -- 2. grant what each role is for
    foreach api_role in array api_roles loop
        for fn in select jsonb_object_keys(functions) loop
            if api_role = 'service_role' or functions -> fn ? api_role then
                execute format('grant execute on function %s to %I', fn, api_role);
            end if;
        end loop;

        -- the marts: not read by the functions, so no access for the API roles (unless
        -- someone builds the marts into public itself, which is then left alone)
        if '{marts_schema_name}' <> 'public' then
            execute format(
                'alter default privileges in schema %I revoke select on tables from %I',
                '{marts_schema_name}', api_role
            );
            execute format(
                'revoke select on all tables in schema %I from %I', '{marts_schema_name}',
                api_role
            );
            execute format('revoke usage on schema %I from %I', '{marts_schema_name}', api_role);
        end if;

        if api_role = 'service_role' then
            foreach rel in array relations loop
                execute format(
                    'grant select, insert, update, delete on public.%I to service_role', rel
                );
            end loop;
            foreach rel in array tables loop
                execute format(
                    'create policy service_role_write on public.%I for all to service_role '
                    || 'using (true) with check (true)', rel
                );
            end loop;
            continue;
        end if;

        foreach rel in array readable loop
            execute format('grant select on public.%I to %I', rel, api_role);
            execute format(
                'create policy %I on public.%I for select to %I using (true)',
                api_role || '_read', rel, api_role
            );
        end loop;
    end loop;
end
$$;
