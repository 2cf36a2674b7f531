// The Store port (handler.ts) on supabase-js: one client per request, created with the caller's
// Authorization header, so PostgREST runs every call as the caller (anon or authenticated) and
// the grants and row level security of sql/postgres/004_security.sql decide what it may do.
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Row, Store } from "./handler.ts";

/** The app's likes table, read for the caller only (their RLS applies): off when table is unset. */
export interface LikesTable {
  table: string;
  userColumn: string;
  videoColumn: string;
  orderColumn: string | null; // newest first when set
}

export interface Config {
  url: string;
  anonKey: string;
  likes: LikesTable | null;
}

/** Settings from the function's environment (SUPABASE_URL and SUPABASE_ANON_KEY are set by the
 * Edge runtime; the RECOMMEND_LIKES_* secrets name the app's likes table). */
export function configFromEnv(env: { get(name: string): string | undefined }): Config {
  const url = env.get("SUPABASE_URL");
  const anonKey = env.get("SUPABASE_ANON_KEY");
  if (!url || !anonKey) throw new Error("SUPABASE_URL and SUPABASE_ANON_KEY must be set");
  const table = env.get("RECOMMEND_LIKES_TABLE");
  return {
    url,
    anonKey,
    likes: table
      ? {
        table,
        userColumn: env.get("RECOMMEND_LIKES_USER_COLUMN") ?? "user_id",
        videoColumn: env.get("RECOMMEND_LIKES_VIDEO_COLUMN") ?? "video_id",
        orderColumn: env.get("RECOMMEND_LIKES_ORDER_COLUMN") ?? null,
      }
      : null,
  };
}

function unwrap<T>(result: { data: T | null; error: { message: string } | null }): T | null {
  if (result.error) throw new Error(result.error.message);
  return result.data;
}

/** The p_exclude argument, left out when nothing is excluded (the function's default: null). */
const pExclude = (exclude: string[]) => exclude.length > 0 ? { p_exclude: exclude } : {};

export function supabaseStore(request: Request, config: Config): Store {
  const authorization = request.headers.get("Authorization");
  const client: SupabaseClient = createClient(config.url, config.anonKey, {
    global: { headers: authorization ? { Authorization: authorization } : {} },
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const token = authorization?.match(/^Bearer\s+(.+)$/i)?.[1] ?? null;
  let verified: Promise<string | null> | null = null;
  const userId = () =>
    verified ??= token
      ? client.auth.getUser(token).then(({ data, error }) => (error ? null : data.user?.id ?? null))
      : Promise.resolve(null);
  const rows = async (fn: string, args: Record<string, unknown>) =>
    (unwrap(await client.rpc(fn, args)) as Row[] | null) ?? [];
  return {
    userId,
    myModelVersion: async () => unwrap(await client.rpc("my_model_version")) as string | null,
    myLikes: async (limit) => {
      const likes = config.likes;
      const user = await userId();
      if (!likes || !user) return [];
      let query = client.from(likes.table).select(likes.videoColumn).eq(likes.userColumn, user);
      if (likes.orderColumn) query = query.order(likes.orderColumn, { ascending: false });
      const found = unwrap(await query.limit(limit)) as Record<string, string>[] | null;
      return (found ?? []).map((row) => String(row[likes.videoColumn]));
    },
    recommendForMe: (k, exclude) => rows("recommend_for_me", { k, ...pExclude(exclude) }),
    recommendForLikes: (videoIds, k, exclude) =>
      rows("recommend_for_likes", { p_video_ids: videoIds, k, ...pExclude(exclude) }),
    similar: (videoId, k, exclude) =>
      rows("similar_videos", { p_video_id: videoId, k, ...pExclude(exclude) }),
    servedVersion: async () => {
      const found = unwrap(
        await client.from("popular_videos").select("model_version").limit(1).maybeSingle(),
      ) as { model_version: string } | null;
      return found?.model_version ?? null;
    },
  };
}
