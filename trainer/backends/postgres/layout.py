"""Where things live in the database: the schemas, tables and functions sql/postgres/ defines.

- raw.reviews, raw.load_rejects, raw.loads  the CSV load (COPY), replaced in one transaction
- <target schema> (PGSCHEMA, default recsys)  the dbt marts; not exposed by Supabase's API
- public.videos, video_embeddings, user_embeddings, popular_videos, reviewed_videos,
  model_runs  app tables (serving reads only these: production needs no marts); the two
  embedding tables are views, each over one of two slot tables (*_a, *_b; see slots.py)
- public.recommend_videos(), similar_videos(), recommend_for_likes(): serving, searching the ANN
  index (security definer: the API roles' only way to the embeddings); recommend_for_me() calls
  recommend_videos() for the JWT's user
"""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "postgres"
APP_SCHEMA = "public"
RAW_SCHEMA = "raw"  # dbt var raw_schema
EMBEDDING_TABLES = {"video_embeddings": "video_id", "user_embeddings": "user_id"}
ANN_TABLE = "video_embeddings"  # the view the serving functions search
ANN_INDEX_SUFFIX = "_embedding_ann"  # a slot's ANN index: video_embeddings_a_embedding_ann
SERVING_FUNCTIONS = (
    "recommend_videos(text, integer, uuid[])",
    "similar_videos(uuid, integer, uuid[])",
    "recommend_for_likes(uuid[], integer, uuid[])",
)
