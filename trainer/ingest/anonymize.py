"""Reviewer ids -> keyed hashes, before any row reaches a database.

`load --anonymize` / `pipeline --anonymize` replace every reviewer id with
HMAC-SHA256(key, id) as 32 hex digits, the key coming from the environment only
(REVIEWER_ID_HMAC_KEY). The same key gives the same hashes every week, so models, champions and
published user vectors line up across runs; without the key nobody can recompute a hash from a
public reviewer id. Raw ids then never reach the raw tables, the dbt staging and marts, the
artifact or production, and the key never reaches SQL text, dbt's logs or the database.

Hashing happens as the CSV is parsed rather than in a dbt staging model: HMAC is not in DuckDB
and needs pgcrypto on Postgres, and a key in a model's SQL would be written to dbt's compiled
files and logs. The staging layer sees only hashes, which is what "anonymized in staging" must
guarantee.

Lines the parser cannot split (ragged, undecodable) keep their reason and line number, but their
text is redacted: the reviewer id inside them cannot be told apart from the other fields.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from trainer.backends import RawLoad
from trainer.errors import UserError
from trainer.transform.dbt import PROJECT_DIR

KEY_VARIABLE = "REVIEWER_ID_HMAC_KEY"
MIN_KEY_BYTES = 16
HASH_HEX_DIGITS = 32  # 128 bits: no collisions among billions of reviewers
REDACTED_LINE = "[redacted: anonymized load]"


def key_from_env(environ: dict[str, str] | None = None) -> bytes:
    """The HMAC key, or a clear error saying how to provide one."""
    env = os.environ if environ is None else environ
    value = env.get(KEY_VARIABLE, "")
    if not value.strip():
        raise UserError(
            f"--anonymize needs the secret {KEY_VARIABLE} in the environment (a random string "
            f"of at least {MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`, kept in your "
            "secret store: the same key every run keeps user ids stable)"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise UserError(
            f"{KEY_VARIABLE} is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key


def reviewer_hash(key: bytes, reviewer_id: str) -> str:
    """HMAC-SHA256 of an id (already trimmed as staging trims it), 32 lowercase hex digits."""
    digest = hmac.new(key, reviewer_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_DIGITS]


def trim_characters() -> str:
    """The characters staging trims from every field: the dbt var trim_codepoints in
    dbt_project/dbt_project.yml (the set's one home; the trim_text macro reads it too)."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return "".join(chr(int(code)) for code in project["vars"]["trim_codepoints"])


def anonymize_load(load: RawLoad, key: bytes) -> RawLoad:
    """The same load with reviewer ids hashed and unparseable lines' text redacted.

    Ids are trimmed first, of the characters stg_reviews trims, so ' abc' and 'abc\u3000' stay one
    reviewer; an id that is empty after trimming stays empty (dbt rejects it as
    missing_reviewer_id, as it would without anonymization).
    """
    reviews = load.reviews
    column = reviews.column("reviewer_id")
    trimmed = pc.utf8_trim(column, characters=trim_characters())
    unique = pc.unique(trimmed).to_pylist()
    hashed = {value: reviewer_hash(key, value) for value in unique if value}
    mapped = pa.array([hashed.get(value, value) for value in trimmed.to_pylist()], type=pa.string())
    reviews = reviews.set_column(
        reviews.schema.get_field_index("reviewer_id"), "reviewer_id", mapped
    )
    rejects = load.rejects
    redacted = pa.array([REDACTED_LINE] * rejects.num_rows, type=pa.string())
    rejects = rejects.set_column(rejects.schema.get_field_index("raw_line"), "raw_line", redacted)
    return replace(load, reviews=reviews, rejects=rejects)
