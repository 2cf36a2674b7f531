-- 003: the serving functions, called by the app (supabase.rpc('recommend_for_me', ...)), by
-- `python -m trainer recommend --target postgres` and by analysts.
--
-- They are the API roles' only way to the embeddings (004_security.sql): `security definer`, so
-- they read the tables as their owner while anon and authenticated hold no privilege on
-- user_embeddings, reviewed_videos or the slot tables, and each returns only its answer. Who may
-- ask what is decided by execute grants: recommend_videos takes any reviewer id, so only
-- service_role (the app's server side, the trainer) may call it; a signed-in app user calls
-- recommend_for_me, which takes the id from the verified JWT, never from an argument. The search
-- path is empty, so every name below is schema-qualified, operators included (pgvector may live
-- in `extensions`): a caller's objects cannot stand in for ours. They read only public tables that
-- each publish refreshes (the videos a user reviewed come from public.reviewed_videos, not from
-- the dbt marts), so they also serve from a production database that holds no marts.
--
-- ANN settings travel with the functions (SET clauses): each publish rebuilds the index and
-- retunes ivfflat.probes on the functions in the same transaction, by the rules below (the
-- ann_* functions: their one home, called by the trainer's publish, trainer/backends/postgres/
-- ann.py, and by the rebuild_vector_index dbt macro alike); similar_videos gets more probes
-- (item-to-item queries need them for the same recall). Measurements: sql/postgres/README.md.
--
-- The ANN index is on the model's dimensions only: vectors are zero-padded to the column, so
-- the cosine distance of the first {ann_dim} dimensions is the distance of the whole vectors,
-- at a quarter of the work for a 64-dim model in a vector(256) column. The expression
-- `subvector(embedding, 1, {ann_dim})::vector({ann_dim})` below is the index's expression,
-- character for character (the planner matches it); a publish with another model dimension
-- re-creates these functions with it (render_migrations(..., ann_dim)).
-- k is bounded in every function: at most {max_k} rows (trainer/backends/base.py:MAX_K), none for
-- k <= 0 or null, so no caller (anon included) reads the whole catalog in one call.
-- Each takes an optional p_exclude uuid[] last (videos the app already showed, or the caller
-- disliked; null or empty: none), filtered in the same WHERE as the other exclusions, so the ANN
-- search still runs through the index; callers bound its length (MAX_EXCLUDE in
-- trainer/backends/base.py and the Edge Function), a longer array is simply used. Null elements
-- are ignored (array_remove): `<> all` with a null in the array would filter out every row.
-- Iterative index scans (pgvector >= 0.8) keep returning rows until k survive the filters
-- (already reviewed, the query video itself, p_exclude); plan_cache_mode = force_custom_plan
-- plans each call with its real k, so the planner picks the ANN index instead of a sort of the
-- table.
-- Ties: videos reviewed by exactly the same users can have identical vectors, and an index scan
-- returns equal distances in no fixed order. Each function therefore takes 2k candidates from the
-- index and keeps the first k by (score desc, video_id), the order DuckDB's macros and the Python
-- artifact use, so the three give the same top k (tests/backends/test_cold_start.py) unless a
-- tie group is larger than k.

-- ---------------------------------------------------------------------------------------------
-- The ANN rules. Plain functions of their arguments (no table read); service_role only (004).

-- ivfflat lists for a table of p_rows vectors: rows / 1000 up to 1M rows, sqrt(rows) above, at
-- least 10 (pgvector's guidance).
create or replace function public.ann_ivfflat_lists(p_rows bigint)
returns integer
language sql
immutable
set search_path = ''
as $$
    select greatest(
        case when p_rows <= 1000000 then p_rows / 1000 else floor(sqrt(p_rows::float8)) end, 10
    )::integer
$$;

-- ivfflat.probes for p_lists lists: ceil(p_factor * sqrt(lists)), at least 10, at most lists.
-- pgvector starts at sqrt(lists); recommend_videos and recommend_for_likes take 4x (the least
-- that keeps recall@10 against exact search above 0.95 with a margin over the variation between
-- k-means builds), similar_videos 6x (item-to-item queries sit nearer the lists' borders).
create or replace function public.ann_ivfflat_probes(p_lists integer, p_factor integer default 4)
returns integer
language sql
immutable
set search_path = ''
as $$
    select least(greatest(ceil(p_factor * sqrt(p_lists::float8))::integer, 10), p_lists)
$$;

-- hnsw.ef_search: candidates kept per query, for every serving function.
create or replace function public.ann_hnsw_ef_search()
returns integer
language sql
immutable
set search_path = ''
as $$ select 400 $$;

-- maintenance_work_mem in MB for an index build: the vectors (and the hnsw graph) twice over,
-- between 64 MB and 2 GB.
create or replace function public.ann_index_memory_mb(p_rows bigint, p_dim integer)
returns integer
language sql
immutable
set search_path = ''
as $$
    select least(greatest(p_rows * (p_dim * 4 + 256) * 2 / 1048576 + 1, 64), 2048)::integer
$$;

-- The leading dimensions the ANN index is on and the serving functions below search: the
-- published model's ({ann_dim}); re-created with them whenever these functions are.
create or replace function public.ann_dim()
returns integer
language sql
immutable
set search_path = ''
as $$ select {ann_dim} $$;

-- The slot table a view (video_embeddings, user_embeddings) reads (002_tables.sql); null unless
-- p_view is a view over exactly one of its two slots.
create or replace function public.embedding_slot(p_view text)
returns text
language sql
stable
set search_path = ''
as $$
    select case when count(distinct t.relname) = 1 then min(t.relname::text) end
    from pg_catalog.pg_rewrite as r
    inner join pg_catalog.pg_depend as d
        on d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass and d.objid = r.oid
    inner join pg_catalog.pg_class as t
        on t.oid = d.refobjid and t.relkind = 'r'
    where
        r.ev_class = pg_catalog.to_regclass('public.' || p_view)
        and t.relname in (p_view || '_a', p_view || '_b')
$$;

-- ---------------------------------------------------------------------------------------------
-- The serving functions.

-- Their signatures before p_exclude: dropped, so no overload is left (a call with two arguments
-- would be ambiguous); 004 grants the new ones. Function bodies in `as $$ ... $$` record no
-- dependency, so recommend_for_me goes first only for the reader.
drop function if exists public.recommend_for_me(integer);
drop function if exists public.recommend_videos(text, integer);
drop function if exists public.similar_videos(uuid, integer);
drop function if exists public.recommend_for_likes(uuid[], integer);

create or replace function public.recommend_videos(
    p_user_id text, k integer default 10, p_exclude uuid[] default null
)
returns table (video_id uuid, product_url text, score double precision)
language sql
stable
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
set ivfflat.probes = 10
set ivfflat.iterative_scan = relaxed_order
set hnsw.ef_search = 400
set hnsw.iterative_scan = relaxed_order
as $$
    with

    me as materialized (
        select
            {vector_schema}.subvector(u.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
                as embedding
        from public.user_embeddings as u
        where u.user_id = p_user_id
    ),

    reviewed as materialized (
        select unnest(r.video_ids) as video_id
        from public.reviewed_videos as r
        where r.user_id = p_user_id
    ),

    -- Users with a vector: nearest videos by cosine distance, through the ANN index.
    nearest as materialized (
        select
            e.video_id,
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select me.embedding from me) as distance
        from public.video_embeddings as e
        where
            exists (select 1 from me)
            and e.video_id not in (select r.video_id from reviewed as r)
            and e.video_id <> all(coalesce(pg_catalog.array_remove(p_exclude, null), '{}'))
        order by
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select me.embedding from me)
        limit 2 * least(greatest(k, 0), {max_k})
    ),

    -- Users without one (no train positive yet, or unknown to the model): the most liked
    -- published videos they have not reviewed (public.popular_videos, ranked at publish), nor
    -- excluded.
    popular as materialized (
        select
            p.video_id,
            p.positives::double precision as score
        from public.popular_videos as p
        where
            not exists (select 1 from me)
            and p.video_id not in (select r.video_id from reviewed as r)
            and p.video_id <> all(coalesce(pg_catalog.array_remove(p_exclude, null), '{}'))
        order by p.positives desc, p.video_id
        limit least(greatest(k, 0), {max_k})
    )

    select n.video_id, v.product_url, 1 - n.distance as score
    from nearest as n
    inner join public.videos as v on v.id = n.video_id
    union all
    select p.video_id, v.product_url, p.score
    from popular as p
    inner join public.videos as v on v.id = p.video_id
    order by 3 desc, 1
    limit least(greatest(k, 0), {max_k})
$$;

comment on function public.recommend_videos(text, integer, uuid[]) is
    'reviews_two_tower: top-k videos for a reviewer by cosine similarity of the published '
    'embeddings, excluding videos the user reviewed and p_exclude; the most liked videos for a '
    'user without an embedding';

create or replace function public.similar_videos(
    p_video_id uuid, k integer default 10, p_exclude uuid[] default null
)
returns table (video_id uuid, product_url text, score double precision)
language sql
stable
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
set ivfflat.probes = 10
set ivfflat.iterative_scan = relaxed_order
set hnsw.ef_search = 400
set hnsw.iterative_scan = relaxed_order
as $$
    with

    -- The query is the user tower of someone whose one like is this video: [0, 1, its unit
    -- coordinates 3..] in the published layout (trainer/ml/model.py), not the video's own vector,
    -- so "similar" is the model's score order: bias + cosine, the videos its viewers also like.
    query as materialized (
        select
            (
                '[0,1]'::{vector_schema}.vector
                operator({vector_schema}.||)
                {vector_schema}.l2_normalize({vector_schema}.subvector(q.embedding, 3, {ann_dim} - 2))
            )::{vector_schema}.vector({ann_dim}) as embedding
        from public.video_embeddings as q
        where q.video_id = p_video_id
    ),

    nearest as materialized (
        select
            e.video_id,
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select query.embedding from query) as distance
        from public.video_embeddings as e
        where
            exists (select 1 from query)
            and e.video_id <> p_video_id
            and e.video_id <> all(coalesce(pg_catalog.array_remove(p_exclude, null), '{}'))
        order by
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select query.embedding from query)
        limit 2 * least(greatest(k, 0), {max_k})
    )

    select n.video_id, v.product_url, 1 - n.distance as score
    from nearest as n
    inner join public.videos as v on v.id = n.video_id
    order by 3 desc, 1
    limit least(greatest(k, 0), {max_k})
$$;

comment on function public.similar_videos(uuid, integer, uuid[]) is
    'reviews_two_tower: the k published videos closest to one video (cosine), p_exclude left '
    'out';

-- A visitor known only by the videos they liked (an app user without reviews): the user tower on
-- those likes, [0, 1, normalised mean of their coordinates 3..] in the published layout
-- (trainer/ml/model.py: fold_in; DuckDB's recommend_for_likes macro), ranked through the ANN index
-- like recommend_videos, the liked videos (and p_exclude) excluded. None of the likes published:
-- no rows (the caller decides what to show instead, e.g. popular_videos).
create or replace function public.recommend_for_likes(
    p_video_ids uuid[], k integer default 10, p_exclude uuid[] default null
)
returns table (video_id uuid, product_url text, score double precision)
language sql
stable
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
set ivfflat.probes = 10
set ivfflat.iterative_scan = relaxed_order
set hnsw.ef_search = 400
set hnsw.iterative_scan = relaxed_order
as $$
    with

    liked as materialized (
        select {vector_schema}.avg({vector_schema}.subvector(e.embedding, 3, {ann_dim} - 2)) as mean
        from public.video_embeddings as e
        where e.video_id = any(p_video_ids)
    ),

    query as materialized (
        select
            (
                '[0,1]'::{vector_schema}.vector
                operator({vector_schema}.||)
                {vector_schema}.l2_normalize(l.mean)
            )::{vector_schema}.vector({ann_dim}) as embedding
        from liked as l
        where l.mean is not null
    ),

    nearest as materialized (
        select
            e.video_id,
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select query.embedding from query) as distance
        from public.video_embeddings as e
        where
            exists (select 1 from query)
            and e.video_id <> all(p_video_ids)
            and e.video_id <> all(coalesce(pg_catalog.array_remove(p_exclude, null), '{}'))
        order by
            {vector_schema}.subvector(e.embedding, 1, {ann_dim})::{vector_schema}.vector({ann_dim})
            operator({vector_schema}.<=>) (select query.embedding from query)
        limit 2 * least(greatest(k, 0), {max_k})
    )

    select n.video_id, v.product_url, 1 - n.distance as score
    from nearest as n
    inner join public.videos as v on v.id = n.video_id
    order by 3 desc, 1
    limit least(greatest(k, 0), {max_k})
$$;

comment on function public.recommend_for_likes(uuid[], integer, uuid[]) is
    'reviews_two_tower: top-k videos for someone known only by the videos they liked (the user '
    'tower on those likes), excluding them and p_exclude';

-- The signed-in caller's user_id in the marts and in user_embeddings: 'app:' || the `sub` claim of
-- the request's verified JWT (the auth uid), the key the dbt macro app_user_key gives the app's
-- likes (dbt_project/macros/app_user_key.sql), so app users never collide with reviewers and no
-- secret is needed to find them. The claim is read as Supabase's auth.uid() reads it (PostgREST
-- sets request.jwt.claims; older versions request.jwt.claim.sub), so no auth schema is needed and
-- the functions run on plain Postgres. No claim (anon, a direct connection): null.
create or replace function public.my_user_id()
returns text
language sql
stable
security definer
set search_path = ''
as $$
    select 'app:' || coalesce(
        nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
    )
$$;

comment on function public.my_user_id() is
    'reviews_two_tower: the signed-in caller''s user_id (app: and the JWT sub claim), or null';

-- The signed-in app user: recommend_videos for my_user_id(), so their published vector when a
-- weekly run has trained on their likes (dbt var app_likes_table), else the popular list. No
-- claim (anon, a direct connection): nobody's vector, the popular list. recommend_videos' own
-- search settings apply to the call, p_exclude passed on.
create or replace function public.recommend_for_me(
    k integer default 10, p_exclude uuid[] default null
)
returns table (video_id uuid, product_url text, score double precision)
language sql
stable
security definer
set search_path = ''
as $$
    select r.video_id, r.product_url, r.score
    from public.recommend_videos(
        public.my_user_id(),
        k,
        p_exclude
    ) as r
$$;

comment on function public.recommend_for_me(integer, uuid[]) is
    'reviews_two_tower: top-k videos for the signed-in caller (my_user_id(): app: and the JWT '
    'sub claim), as recommend_videos for that id; the most liked videos when they have no published vector';

-- Which published vector recommend_for_me would use for the signed-in caller: its model version,
-- or null when the caller has none (recommend_for_me then answers with the popular list). The
-- ai-recommend Edge Function asks first, so it can fold in the caller's likes instead and say
-- which of the three it used. The id is my_user_id(), as recommend_for_me's.
create or replace function public.my_model_version()
returns text
language sql
stable
security definer
set search_path = ''
as $$
    select u.model_version
    from public.user_embeddings as u
    where u.user_id = public.my_user_id()
$$;

comment on function public.my_model_version() is
    'reviews_two_tower: the model version of the signed-in caller''s published vector, or null';
