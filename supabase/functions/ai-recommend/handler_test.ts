// The handler against a fake Store: each mode, which source `me` uses, the bounds and errors.
// The Store itself runs against a real Postgres in tests/e2e (PostgREST stand-in).
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { handle, MAX_EXCLUDE, MAX_K, type Row, type Store } from "./handler.ts";

// node:assert ships with Deno (nothing to fetch: JSR is not reachable from every CI machine)
const assertStringIncludes = (text: string, part: string) =>
  ok(text.includes(part), `${JSON.stringify(text)} does not include ${JSON.stringify(part)}`);

const A = "11111111-1111-4111-8111-111111111111";
const B = "22222222-2222-4222-8222-222222222222";
const row = (id: string, score: number): Row => ({
  video_id: id,
  product_url: `https://x/${id}`,
  score,
});

interface Caller {
  user?: string | null;
  vector?: string | null;
  likes?: string[];
  fail?: boolean;
}

/** A Store for one caller; `calls` records what the handler asked, in order (an exclusion as
 * `-id,id` after k). */
function fake(caller: Caller, calls: string[] = []): Store {
  const ex = (exclude: string[]) => (exclude.length > 0 ? `;-${exclude.join(",")}` : "");
  const call = <T>(name: string, value: T): Promise<T> => {
    calls.push(name);
    return caller.fail
      ? Promise.reject(new Error("permission denied; token=secret-jwt"))
      : Promise.resolve(value);
  };
  return {
    userId: () => call("userId", caller.user ?? null),
    myModelVersion: () => call("myModelVersion", caller.vector ?? null),
    myLikes: () => call("myLikes", caller.likes ?? []),
    recommendForMe: (k, exclude) => call(`recommendForMe(${k}${ex(exclude)})`, [row(A, 0.9)]),
    recommendForLikes: (ids, k, exclude) =>
      call(
        `recommendForLikes(${ids.join(",")};${k}${ex(exclude)})`,
        ids.includes(B) ? [] : [row(B, 0.8)],
      ),
    similar: (id, k, exclude) => call(`similar(${id};${k}${ex(exclude)})`, [row(B, 0.7)]),
    servedVersion: () => call("servedVersion", "two_tower_202612010000"),
  };
}

function post(body: unknown, method = "POST"): Request {
  return new Request("http://localhost/ai-recommend", {
    method,
    headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function ask(body: unknown, caller: Caller = {}, calls: string[] = []) {
  const response = await handle(post(body), () => fake(caller, calls));
  return { status: response.status, body: await response.json(), headers: response.headers };
}

Deno.test("me with a published vector uses it and names its version", async () => {
  const calls: string[] = [];
  const got = await ask({ mode: "me", k: 5 }, { user: "u1", vector: "two_tower_v1" }, calls);
  assertEquals(got.status, 200);
  assertEquals([got.body.source, got.body.model_version], ["vector", "two_tower_v1"]);
  assertEquals(got.body.results, [row(A, 0.9)]);
  assertEquals(calls, ["userId", "myModelVersion", "recommendForMe(5)"]);
});

Deno.test("me without a vector folds in the caller's likes", async () => {
  const calls: string[] = [];
  const got = await ask({ mode: "me" }, { user: "u1", likes: [A] }, calls);
  assertEquals([got.body.source, got.body.model_version], ["likes", "two_tower_202612010000"]);
  assertEquals(calls, [
    "userId",
    "myModelVersion",
    "myLikes",
    `recommendForLikes(${A};10)`,
    "servedVersion",
  ]);
});

Deno.test("me without a vector or usable likes gets the popular list", async () => {
  for (const likes of [[], [B]]) { // none, or none of them published
    const got = await ask({ mode: "me" }, { user: "u1", likes });
    assertEquals(got.body.source, "popular");
    assertEquals(got.body.results, [row(A, 0.9)]);
  }
});

Deno.test("me needs a signed-in caller: the body cannot name one", async () => {
  const calls: string[] = [];
  const got = await ask({ mode: "me", user_id: "someone-else" }, { user: null }, calls);
  assertEquals(got.status, 401);
  assertEquals(calls, ["userId"]);
});

Deno.test("likes and similar answer with the served version", async () => {
  const likes = await ask({ mode: "likes", video_ids: [A, A.toUpperCase()], k: 3 });
  assertEquals([likes.status, likes.body.source, likes.body.model_version], [
    200,
    "likes",
    "two_tower_202612010000",
  ]);
  const calls: string[] = [];
  const similar = await ask({ mode: "similar", video_id: A }, {}, calls);
  assertEquals(similar.body.results, [row(B, 0.7)]);
  assertEquals(calls, [`similar(${A};10)`, "servedVersion"]);
});

Deno.test("exclude reaches every function, on every path of me, lower-cased, once", async () => {
  const exclude = [B, B.toUpperCase(), A];
  const cases: [unknown, Caller, string][] = [
    [{ mode: "me", k: 3, exclude }, { user: "u1", vector: "v1" }, `recommendForMe(3;-${B},${A})`],
    [{ mode: "me", exclude }, { user: "u1", likes: [A] }, `recommendForLikes(${A};10;-${B},${A})`],
    [{ mode: "me", exclude }, { user: "u1" }, `recommendForMe(10;-${B},${A})`], // popular
    [{ mode: "likes", video_ids: [A], exclude }, {}, `recommendForLikes(${A};10;-${B},${A})`],
    [{ mode: "similar", video_id: A, exclude }, {}, `similar(${A};10;-${B},${A})`],
    [{ mode: "similar", video_id: A, exclude: [] }, {}, `similar(${A};10)`],
  ];
  for (const [body, caller, expected] of cases) {
    const calls: string[] = [];
    const got = await ask(body, caller, calls);
    assertEquals(got.status, 200, JSON.stringify(body));
    ok(calls.includes(expected), `${JSON.stringify(calls)} lacks ${expected}`);
  }
});

Deno.test("bad requests are 400s with a JSON error and reach no database", async () => {
  const cases: [unknown, string][] = [
    ["{not json", "not valid JSON"],
    [[1, 2], "JSON object"],
    [{ mode: "everything" }, "mode must be"],
    [{ mode: "likes", video_ids: ["nope"] }, "video_ids[0] must be a video uuid"],
    [{ mode: "likes", video_ids: [] }, "1 to 200"],
    [{ mode: "likes", video_ids: Array(201).fill(A) }, "1 to 200"],
    [{ mode: "similar", video_id: 7 }, "video_id must be a video uuid"],
    [{ mode: "me", k: 0 }, `1 to ${MAX_K}`],
    [{ mode: "me", k: MAX_K + 1 }, `1 to ${MAX_K}`],
    [{ mode: "me", k: 2.5 }, `1 to ${MAX_K}`],
    [{ mode: "me", k: "10" }, `1 to ${MAX_K}`],
    [{ mode: "similar", video_id: A, exclude: A }, `at most ${MAX_EXCLUDE} video uuids`],
    [{ mode: "me", exclude: Array(MAX_EXCLUDE + 1).fill(A) }, `at most ${MAX_EXCLUDE}`],
    [{ mode: "likes", video_ids: [A], exclude: [A, 7] }, "exclude[1] must be a video uuid"],
  ];
  for (const [body, message] of cases) {
    const calls: string[] = [];
    const got = await ask(body, { user: "u1" }, calls);
    assertEquals(got.status, 400, JSON.stringify(body));
    assertStringIncludes(got.body.error, message);
    assertEquals(calls, []);
  }
});

Deno.test("a database failure is a 502 that echoes neither its message nor a token", async () => {
  const original = console.error;
  console.error = () => {};
  try {
    const got = await ask({ mode: "similar", video_id: A }, { fail: true });
    assertEquals(got.status, 502);
    assertEquals(JSON.stringify(got.body).includes("secret-jwt"), false);
    assertEquals(JSON.stringify(got.body).includes("permission"), false);
  } finally {
    console.error = original;
  }
});

Deno.test("CORS: preflight answered, every response carries the headers, only POST", async () => {
  const preflight = await handle(post(null, "OPTIONS"), () => fake({}));
  assertEquals(preflight.status, 204);
  assertEquals(preflight.headers.get("Access-Control-Allow-Origin"), "*");
  assertStringIncludes(
    preflight.headers.get("Access-Control-Allow-Headers") ?? "",
    "authorization",
  );
  const get = await handle(new Request("http://localhost/ai-recommend"), () => fake({}));
  assertEquals(get.status, 405);
  assertEquals(get.headers.get("Access-Control-Allow-Origin"), "*");
  await get.body?.cancel();
  const ok = await ask({ mode: "similar", video_id: A });
  assertEquals(ok.headers.get("Access-Control-Allow-Origin"), "*");
});
