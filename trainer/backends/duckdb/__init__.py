"""The embedded default: one DuckDB file that is the warehouse and the app's database.

warehouse.py holds the Warehouse (raw load, reads, the publish transaction, run records);
serving.py the queries that answer `recommend` and the app.
"""

from trainer.backends.duckdb.warehouse import SQL_DIR, DuckDBWarehouse

__all__ = ["SQL_DIR", "DuckDBWarehouse"]
