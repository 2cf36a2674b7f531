// Supabase Edge Function `ai-recommend`: recommendations from the published embeddings.
//   POST {"mode": "me", "k": 10}                       the signed-in caller (JWT)
//   POST {"mode": "likes", "video_ids": [...], "k": 10} a visitor known by likes
//   POST {"mode": "similar", "video_id": "...", "k": 10}
//   every mode also takes "exclude": [...] (at most 500 video ids never to return)
// Deploy: `supabase functions deploy ai-recommend` (README "The ai-recommend Edge Function").
import { handle } from "./handler.ts";
import { configFromEnv, supabaseStore } from "./store.ts";

const config = configFromEnv(Deno.env);

Deno.serve((request) => handle(request, (req) => supabaseStore(req, config)));
