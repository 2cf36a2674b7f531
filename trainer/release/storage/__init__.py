"""Model artifacts behind one small interface: a local folder (default) or Supabase Storage.

    store = store_from_env(Path("artifacts/models"))
    version = "two_tower_202501050400"
    store.put_version(Path(f"artifacts/{version}.safetensors"), version)
    ...  # the embeddings go live
    store.move_latest(Path(f"artifacts/{version}.safetensors"), version)

The interface and naming rules live in `base`, the folder in `local`, Supabase Storage in
`supabase` (its error reading in `supabase_errors`), the choice between them in `factory`; this
package re-exports what the rest of the code imports.
"""

from trainer.release.storage.base import (
    ArtifactStore,
    Published,
    sha256_file,
    versioned_name,
)
from trainer.release.storage.factory import store_from_env
from trainer.release.storage.local import LocalStore
from trainer.release.storage.supabase import DEFAULT_BUCKET, SupabaseStore
from trainer.release.versions import LATEST_NAME, MODEL_PREFIX, SUFFIX

__all__ = [
    "DEFAULT_BUCKET",
    "LATEST_NAME",
    "MODEL_PREFIX",
    "SUFFIX",
    "ArtifactStore",
    "LocalStore",
    "Published",
    "SupabaseStore",
    "sha256_file",
    "store_from_env",
    "versioned_name",
]
