"""Choosing the artifact store from the environment: Supabase Storage or the local folder.

Supabase Storage is used when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are both set (bucket from
SUPABASE_BUCKET, default `models`); otherwise artifacts stay in the local folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from trainer.errors import UserError
from trainer.release.storage.base import ArtifactStore
from trainer.release.storage.local import LocalStore
from trainer.release.storage.supabase import DEFAULT_BUCKET, SupabaseStore


def store_from_env(local_root: Path, env: Mapping[str, str] | None = None) -> ArtifactStore:
    """Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set, else a folder.

    Setting only one of the two is an error rather than a silent fallback to the local folder
    (a scheduled job would otherwise "publish" to a runner's disk that is thrown away).
    """
    env = os.environ if env is None else env
    url = (env.get("SUPABASE_URL") or "").strip()
    key = (env.get("SUPABASE_SERVICE_ROLE_KEY") or "").strip()
    if url and key:
        bucket = (env.get("SUPABASE_BUCKET") or "").strip() or DEFAULT_BUCKET
        return SupabaseStore(url, key, bucket)
    if url or key:
        missing = "SUPABASE_SERVICE_ROLE_KEY" if url else "SUPABASE_URL"
        present = "SUPABASE_URL" if url else "SUPABASE_SERVICE_ROLE_KEY"
        raise UserError(
            f"{present} is set but {missing} is not: set both to publish to Supabase Storage, "
            "or neither to keep artifacts in the local folder"
        )
    return LocalStore(local_root)
