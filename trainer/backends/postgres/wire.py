"""The binary COPY wire format of the embedding write-back: rows encoded by numpy, no I/O.

Pure functions (bytes in, bytes out), kept apart from the driver glue that sends them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from trainer.backends.base import check_vectors
from trainer.errors import UserError

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def binary_copy_blocks(
    ids: list[str] | np.ndarray,
    matrix: np.ndarray,
    uuid_keys: bool = False,
    suffix: tuple[bytes, ...] = (),
    chunk_rows: int = 16_384,
    dim: int | None = None,
) -> Iterator[bytes]:
    """COPY BINARY rows (key, embedding vector, *suffix), built by numpy rather than row by row.

    Each block is one fixed-size numpy record array of at most `chunk_rows` rows: int16 field
    count, int32 key size, the key (16 bytes for a uuid; text keys are grouped by byte length),
    int32 vector size, then pgvector's binary vector (int16 dim, int16 unused, dim big-endian
    float4), then each `suffix` value (already in binary form: the same for every row).
    Vectors narrower than `dim` (the column's dimension) are zero-padded on the way.
    """
    width = matrix.shape[1]
    dim = width if dim is None else dim
    if width > dim:
        raise ValueError(f"vectors of {width} dimensions do not fit vector({dim})")
    yield _COPY_HEADER
    if uuid_keys or isinstance(ids, np.ndarray):
        keys = ids if isinstance(ids, np.ndarray) else uuid_bytes(list(ids))
        groups = [(16, np.arange(len(keys)), keys)]
    else:
        encoded = [key.encode() for key in ids]
        lengths = np.fromiter((len(k) for k in encoded), dtype=np.int64, count=len(encoded))
        groups = []
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            texts = np.array([encoded[i] for i in rows], f"S{length}") if length else None
            groups.append((int(length), rows, texts))
    constants = [
        field
        for i, value in enumerate(suffix)
        for field in ((f"size{i}", ">i4"), *([(f"value{i}", f"S{len(value)}")] if value else []))
    ]
    for length, rows, keys in groups:
        key_field = [("key", f"S{length}")] if length else []
        record = np.dtype(
            [("fields", ">i2"), ("key_size", ">i4"), *key_field]
            + [("vector_size", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))]
            + constants
        )
        for start in range(0, len(rows), chunk_rows):
            part = slice(start, start + chunk_rows)
            block = np.empty(len(rows[part]), dtype=record)
            block["fields"] = 2 + len(suffix)
            block["key_size"] = length
            if length:
                block["key"] = keys[part]
            block["vector_size"] = 4 + 4 * dim
            block["dim"] = dim
            block["unused"] = 0
            block["values"][:, :width] = matrix[rows[part]]
            block["values"][:, width:] = 0
            for i, value in enumerate(suffix):
                block[f"size{i}"] = len(value)
                if value:
                    block[f"value{i}"] = value
            yield block.tobytes()
    yield _COPY_TRAILER


def timestamptz_bytes(stamp: datetime) -> bytes:
    """A timestamptz in COPY's binary form: int64 microseconds since 2000-01-01 UTC."""
    return ((stamp - _PG_EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)


def checked(
    ids: list[str], matrix: np.ndarray, table: str, uuid_keys: bool
) -> tuple[list[str] | np.ndarray, np.ndarray]:
    """Validated (keys, float32 matrix); uuid keys come back as 16-byte values (numpy S16)."""
    ids = [str(i) for i in ids]
    matrix = check_vectors(ids, matrix, table)  # shape, finite, distinct ids (shared rules)
    if not uuid_keys:
        if any("\x00" in i for i in ids):
            raise UserError(
                f"{table}: an id contains a NUL character; Postgres text cannot hold it"
            )
        return ids, matrix
    keys = uuid_bytes(ids, table)
    if len(np.unique(keys)) != len(ids):  # one uuid spelt two ways (case, braces)
        raise UserError(f"{table}: duplicate ids in the model's vectors; nothing published")
    return keys, matrix


def uuid_bytes(ids: list[str], table: str = "video_embeddings") -> np.ndarray:
    """The 16 bytes of each uuid (numpy S16), vectorized for the canonical 8-4-4-4-12 form."""
    n = len(ids)
    try:
        text = "".join(ids).encode("ascii")
        if len(text) == 36 * n:
            chars = np.frombuffer(text, dtype="S1").reshape(n, 36)
            hyphens = np.array([8, 13, 18, 23])
            if n == 0 or (chars[:, hyphens] == b"-").all():
                digits = np.delete(chars, hyphens, axis=1)
                return np.frombuffer(bytes.fromhex(digits.tobytes().decode()), dtype="S16")
    except (UnicodeEncodeError, ValueError):
        pass
    out = []
    for i in ids:  # other spellings, or a bad id to name
        try:
            out.append(uuid.UUID(i).bytes)
        except ValueError:
            raise UserError(f"{table}: video id {i!r} is not a uuid") from None
    return np.frombuffer(b"".join(out), dtype="S16")
