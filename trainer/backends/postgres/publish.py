"""One publish: both embedding tables replaced by one model version, in one locked transaction.

A publish is one transaction under an advisory lock: register the videos the app lacks (from
another database's marts when given, else from this one's video_catalog), write both embedding
tables (a new version: COPY into the slots the views do not show, on two more connections,
then the ANN index and the foreign key, then point the views at them; the same version again:
stage and upsert into the published slots), refresh reviewed_videos and popular_videos and
retune the functions' probes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import psycopg

from trainer.backends.base import ServingTables, check_widths, pad_to
from trainer.backends.postgres.ann import (
    IndexSettings,
    index_slot,
    rebuild_ann_index,
    tune_functions,
)
from trainer.backends.postgres.connection import Transaction
from trainer.backends.postgres.layout import ANN_TABLE
from trainer.backends.postgres.migrations import column_dim
from trainer.backends.postgres.republish import is_republish, republish
from trainer.backends.postgres.serving import refresh_serving
from trainer.backends.postgres.slots import active_slot, fill_slots, swap_in
from trainer.backends.postgres.videos import (
    raise_unregistered,
    register_catalog,
    register_videos,
)
from trainer.backends.postgres.wire import checked
from trainer.errors import UserError

# pg_advisory_xact_lock key (the dbt macro rebuild_vector_index uses it too).
PUBLISH_LOCK_KEY = 4123577019


def publish_embeddings(
    tx: Transaction,
    connect: Callable[[], psycopg.Connection],
    notify: Callable[[str], None],
    index: IndexSettings,
    videos: tuple[list[str], np.ndarray],
    users: tuple[list[str], np.ndarray],
    model_version: str,
    serving: ServingTables | None = None,
) -> None:
    """Replace both embedding tables with one model version, atomically, and index it.

    Everything readers see changes in one transaction (from `tx`), which holds an advisory
    lock from start to commit (concurrent publishes queue). First the videos this database
    lacks are registered (from `serving`, another database's marts, else this one's
    video_catalog): registration happens here, after the gate, never in dbt. A new version (the
    weekly case) is COPYed (binary) into the slots that the video_embeddings and
    user_embeddings views do not show, bare, so the COPY writes rows only, by two connections
    (from `connect`) at once (fill_slots); the ANN index and the foreign key to videos are
    built after, in bulk. Readers keep seeing the old slots until the commit. Re-publishing a
    version that is already there goes through staging tables and a compare-and-upsert on the
    published slots instead, so unchanged rows are not rewritten and the call is a no-op. Then
    reviewed_videos and popular_videos are refreshed (from `serving`, else from this
    database's marts). Last, the views are pointed at the new slots and the old slots
    emptied; or, on a re-publish, the ANN index is rebuilt and swapped.

    Steps reported to `notify`: "staged" (inputs checked, lock held; on the re-publish path,
    staging tables filled), "upserted:<table>" (a new version: both slots filled), "upserted"
    (serving tables refreshed too), "indexed" (the new ANN index built), "swapped" (a new
    version: foreign key added, views pointed at the new slots).
    """
    batches = {
        "video_embeddings": checked(*videos, "video_embeddings", uuid_keys=True),
        "user_embeddings": checked(*users, "user_embeddings", uuid_keys=False),
    }
    check_widths(batches["video_embeddings"][1], batches["user_embeddings"][1])
    model_dim = max(matrix.shape[1] for _, matrix in batches.values())
    try:
        with tx() as cur:
            cur.execute("select pg_advisory_xact_lock(%s), now()", (PUBLISH_LOCK_KEY,))
            stamp = cur.fetchone()[1]
            if serving is not None:
                register_videos(cur, serving.videos)
            else:
                register_catalog(cur)
            dims = {}
            for table, (_, matrix) in batches.items():
                dims[table] = column_dim(cur, table)
                pad_to(matrix[:0], dims[table], table)  # a wider model: a clear error
            if is_republish(cur, model_version):
                republish(cur, batches, dims, model_version, index.vector_schema, notify)
                refresh_serving(cur, serving, model_version, active_slot(cur))
                notify("upserted")
                rebuild_ann_index(cur, model_dim, index)
                notify("indexed")
                notify("swapped")
            else:
                notify("staged")
                filled = fill_slots(cur, connect, batches, dims, model_version, stamp)
                for table in filled:
                    notify(f"upserted:{table}")
                refresh_serving(cur, serving, model_version, filled[ANN_TABLE])
                notify("upserted")
                index_slot(cur, filled[ANN_TABLE], model_dim, index)
                notify("indexed")
                swap_in(cur, filled)
                tune_functions(cur)
                notify("swapped")
    except psycopg.errors.ForeignKeyViolation as exc:
        # The foreign key video_embeddings_*.video_id -> videos.id refused the vectors: say
        # which and how many (the transaction is gone; ask again in a fresh one).
        raise_unregistered(tx, batches["video_embeddings"][0])
        raise UserError(
            f"publishing {model_version} failed and was rolled back: {str(exc).strip()}"
        ) from exc
    except psycopg.OperationalError as exc:
        raise UserError(
            f"publishing {model_version} failed ({str(exc).strip()}); the transaction was "
            "rolled back, the previous embeddings and index are unchanged"
        ) from exc
    except psycopg.Error as exc:
        raise UserError(
            f"publishing {model_version} failed and was rolled back (the previous embeddings "
            f"and index are unchanged): {str(exc).strip()}"
        ) from exc
