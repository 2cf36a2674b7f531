"""Test helpers: builders of real DuckDB warehouses, the bundled Postgres, fakes of services."""
