-- 004: grants and row level security, as a Supabase project expects them.
--
--   anon           read videos, video_embeddings, popular_videos; execute both functions (a
--                  visitor gets the popular list: no user_embeddings or reviewed_videos row is
--                  visible to anon)
--   authenticated  read those, user_embeddings and reviewed_videos; execute both functions
--   service_role   read and write everything here (the trainer's publish, Edge Functions)
--   public         nothing: execute on the functions is revoked from PUBLIC
--
-- The functions read only public tables, so the API roles need nothing in the dbt marts schema
-- {marts_schema}; earlier versions granted them read access there, which is taken back below.
-- Keep that schema out of PostgREST's `db_schemas`.
--
-- The roles exist on Supabase; on plain Postgres grants and policies are made only for the
-- roles that exist, so the same files apply anywhere.

-- video_embeddings and user_embeddings are security_invoker views: reading one reads a slot,
-- whose grants and policies apply; both slots of a view get the same ones.
alter table public.video_embeddings_a enable row level security;
alter table public.video_embeddings_b enable row level security;
alter table public.user_embeddings_a enable row level security;
alter table public.user_embeddings_b enable row level security;
alter table public.model_runs enable row level security;
alter table public.popular_videos enable row level security;
alter table public.reviewed_videos enable row level security;

revoke all on function public.recommend_videos(text, integer) from public;
revoke all on function public.similar_videos(uuid, integer) from public;
revoke all on function public.recommend_for_likes(uuid[], integer) from public;

do $$
declare
    ours_videos boolean := coalesce(
        obj_description('public.videos'::regclass, 'pg_class') like 'reviews_two_tower:%',
        false
    );
    our_tables text[] := array[
        'video_embeddings_a', 'video_embeddings_b', 'user_embeddings_a', 'user_embeddings_b',
        'model_runs', 'popular_videos', 'reviewed_videos'
    ];
    api_role text;
    tbl text;
begin
    -- The videos table gets our policies only when migration 002 created it; an app's own
    -- videos table keeps its own security.
    if ours_videos then
        alter table public.videos enable row level security;
        our_tables := our_tables || 'videos'::text;
    end if;

    foreach api_role in array array['anon', 'authenticated', 'service_role'] loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = api_role) then
            continue;
        end if;

        execute format(
            'grant execute on function public.recommend_videos(text, integer) to %I', api_role
        );
        execute format(
            'grant execute on function public.similar_videos(uuid, integer) to %I', api_role
        );
        execute format(
            'grant execute on function public.recommend_for_likes(uuid[], integer) to %I', api_role
        );

        -- the marts: no longer read by the functions, so no access for the API roles (unless
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
            execute 'grant select, insert, update, delete on public.video_embeddings, '
                || 'public.video_embeddings_a, public.video_embeddings_b, public.user_embeddings, '
                || 'public.user_embeddings_a, public.user_embeddings_b, public.model_runs, '
                || 'public.popular_videos, public.reviewed_videos to service_role';
            if ours_videos then
                execute 'grant select, insert, update, delete on public.videos to service_role';
            end if;
            foreach tbl in array our_tables loop
                execute format('drop policy if exists service_role_write on public.%I', tbl);
                execute format(
                    'create policy service_role_write on public.%I for all to service_role '
                    || 'using (true) with check (true)', tbl
                );
            end loop;
            continue;
        end if;

        -- anon and authenticated read. Supabase grants API roles every privilege on new
        -- public tables by default: writes (and TRUNCATE, which RLS does not cover) are taken
        -- back here, and model_runs is for the service role only.
        execute format(
            'revoke insert, update, delete, truncate on public.video_embeddings, '
            || 'public.video_embeddings_a, public.video_embeddings_b, public.user_embeddings, '
            || 'public.user_embeddings_a, public.user_embeddings_b, public.model_runs, '
            || 'public.popular_videos, public.reviewed_videos from %I',
            api_role
        );
        execute format('revoke select on public.model_runs from %I', api_role);
        -- select on user_embeddings and reviewed_videos for anon too, so the invoker function
        -- can run for it; RLS gives anon no rows there (no policy), hence the popular fallback.
        execute format(
            'grant select on public.video_embeddings, public.video_embeddings_a, '
            || 'public.video_embeddings_b, public.user_embeddings, public.user_embeddings_a, '
            || 'public.user_embeddings_b, public.popular_videos, public.reviewed_videos to %I',
            api_role
        );
        foreach tbl in array array[
            'video_embeddings_a', 'video_embeddings_b', 'popular_videos'
        ] loop
            execute format('drop policy if exists %I on public.%I', api_role || '_read', tbl);
            execute format(
                'create policy %I on public.%I for select to %I using (true)',
                api_role || '_read', tbl, api_role
            );
        end loop;
        if api_role = 'authenticated' then
            foreach tbl in array array['user_embeddings_a', 'user_embeddings_b'] loop
                execute format('drop policy if exists authenticated_read on public.%I', tbl);
                execute format(
                    'create policy authenticated_read on public.%I for select '
                    || 'to authenticated using (true)', tbl
                );
            end loop;
            execute 'drop policy if exists authenticated_read on public.reviewed_videos';
            execute 'create policy authenticated_read on public.reviewed_videos for select '
                || 'to authenticated using (true)';
        end if;
        if ours_videos then
            execute format(
                'revoke insert, update, delete, truncate on public.videos from %I', api_role
            );
            execute format('grant select on public.videos to %I', api_role);
            execute format('drop policy if exists %I on public.videos', api_role || '_read');
            execute format(
                'create policy %I on public.videos for select to %I using (true)',
                api_role || '_read', api_role
            );
        end if;
    end loop;
end
$$;
