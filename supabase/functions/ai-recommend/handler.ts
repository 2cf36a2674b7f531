// The ai-recommend request handler: the HTTP contract (modes, bounds, errors, CORS) apart from
// the database, which it reaches only through the Store port (store.ts implements it with
// supabase-js, tests with a fake). Rules:
// - `me` is the signed-in caller, identified by the verified JWT, never by the body: their
//   published vector if they have one, else the user tower on their likes (the app's likes
//   table, read under their own grants and RLS), else the popular list; `source` says which.
// - every answer names the model version it came from;
// - k is an integer in 1..100 (the SQL functions bound it too); a bad body is a 400 with a JSON
//   error; the database's own messages never reach the caller (they are logged, not echoed).
// - `exclude` (optional, every mode): at most 500 video uuids never to return (already shown,
//   disliked), passed to the SQL functions as p_exclude, on every path of `me` (vector, likes,
//   popular) too; the answer is still k rows when there are enough videos.

export const MAX_K = 100;
export const MAX_LIKES = 200;
export const MAX_EXCLUDE = 500; // trainer/backends/base.py:MAX_EXCLUDE
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const CORS_HEADERS: Record<string, string> = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
};

export interface Row {
  video_id: string;
  product_url: string;
  score: number;
}

export type Source = "vector" | "likes" | "popular" | "similar";

/** What the handler needs from the database, as the caller (their JWT, their grants). */
export interface Store {
  /** The caller's user id, verified by Supabase Auth; null for anon or a bad token. */
  userId(): Promise<string | null>;
  /** The version of the caller's published vector (my_model_version()), or null. */
  myModelVersion(): Promise<string | null>;
  /** The videos the caller liked, newest first (empty when no likes table is configured). */
  myLikes(limit: number): Promise<string[]>;
  // `exclude`: video ids never to return (p_exclude); empty: nothing excluded
  recommendForMe(k: number, exclude: string[]): Promise<Row[]>;
  recommendForLikes(videoIds: string[], k: number, exclude: string[]): Promise<Row[]>;
  similar(videoId: string, k: number, exclude: string[]): Promise<Row[]>;
  /** The version the serving tables hold now (popular_videos is ranked at each publish). */
  servedVersion(): Promise<string | null>;
}

export class BadRequest extends Error {}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...CORS_HEADERS, "Content-Type": "application/json" },
  });
}

function boundedK(value: unknown): number {
  if (value === undefined) return 10;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_K) {
    throw new BadRequest(`k must be an integer from 1 to ${MAX_K}`);
  }
  return value;
}

function videoId(value: unknown, field: string): string {
  if (typeof value !== "string" || !UUID.test(value)) {
    throw new BadRequest(`${field} must be a video uuid`);
  }
  return value.toLowerCase();
}

function videoIds(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_LIKES) {
    throw new BadRequest(`video_ids must be a list of 1 to ${MAX_LIKES} video uuids`);
  }
  return [...new Set(value.map((v, i) => videoId(v, `video_ids[${i}]`)))];
}

function excluded(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.length > MAX_EXCLUDE) {
    throw new BadRequest(`exclude must be a list of at most ${MAX_EXCLUDE} video uuids`);
  }
  return [...new Set(value.map((v, i) => videoId(v, `exclude[${i}]`)))];
}

interface Found {
  source: Source;
  results: Row[];
  version?: string; // the caller's vector's; else the version the serving tables hold
}

/** The rows for one valid body, and where they came from; a Response for a refused caller. */
async function find(
  store: Store,
  body: Record<string, unknown>,
  k: number,
  exclude: string[],
): Promise<Found | Response> {
  switch (body.mode) {
    case "likes":
      return {
        source: "likes",
        results: await store.recommendForLikes(videoIds(body.video_ids), k, exclude),
      };
    case "similar":
      return {
        source: "similar",
        results: await store.similar(videoId(body.video_id, "video_id"), k, exclude),
      };
    case "me": {
      if (await store.userId() === null) {
        return json(401, { error: "mode me needs a signed-in user (Authorization: Bearer <jwt>)" });
      }
      const version = await store.myModelVersion();
      if (version !== null) {
        return { source: "vector", results: await store.recommendForMe(k, exclude), version };
      }
      const likes = await store.myLikes(MAX_LIKES);
      const liked = likes.length > 0 ? await store.recommendForLikes(likes, k, exclude) : [];
      if (liked.length > 0) return { source: "likes", results: liked };
      // no vector, no usable likes: the popular list, the caller's own reviews (and exclude)
      // left out
      return { source: "popular", results: await store.recommendForMe(k, exclude) };
    }
    default:
      throw new BadRequest('mode must be "me", "likes" or "similar"');
  }
}

async function answer(store: Store, body: Record<string, unknown>): Promise<Response> {
  const found = await find(store, body, boundedK(body.k), excluded(body.exclude));
  if (found instanceof Response) return found;
  const version = found.version ?? await store.servedVersion();
  return json(200, {
    mode: body.mode,
    source: found.source,
    model_version: version,
    results: found.results,
  });
}

/** One request: CORS preflight, POST with a JSON body, or an error. `storeFor` builds the
 * caller's Store from the request (its Authorization header). */
export async function handle(
  request: Request,
  storeFor: (request: Request) => Store,
): Promise<Response> {
  if (request.method === "OPTIONS") {
    return new Response(null, { status: 204, headers: CORS_HEADERS });
  }
  if (request.method !== "POST") return json(405, { error: "use POST with a JSON body" });
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return json(400, { error: "the body is not valid JSON" });
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return json(400, { error: "the body must be a JSON object" });
  }
  try {
    return await answer(storeFor(request), body as Record<string, unknown>);
  } catch (error) {
    if (error instanceof BadRequest) return json(400, { error: error.message });
    console.error(
      "ai-recommend: the database call failed:",
      error instanceof Error ? error.message : error,
    );
    return json(502, { error: "the recommendation service failed; try again later" });
  }
}
