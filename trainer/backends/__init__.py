"""Engine backends behind one interface; `connect` picks one from a profiles.yml target."""

from __future__ import annotations

from trainer.backends.base import RawLoad, Recommendation, ServingTables, Warehouse
from trainer.backends.profiles import Target


def connect(target: Target, read_only: bool = False) -> Warehouse:
    """Open the warehouse a profiles.yml target points at."""
    if target.kind == "duckdb":
        from trainer.backends.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(target.duckdb_path, target.schema, read_only=read_only)
    if target.kind == "postgres":
        from trainer.backends.postgres import PostgresWarehouse

        return PostgresWarehouse.from_target(target)
    raise ValueError(f"unsupported target type {target.kind!r}")


__all__ = ["RawLoad", "Recommendation", "ServingTables", "Warehouse", "connect"]
