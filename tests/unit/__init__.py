"""Pure-Python behaviour, one file per module (real DuckDB files where a module needs one)."""
