"""A two-tower recommender from scraped star reviews, SQL-first (dbt on DuckDB or Postgres)."""

__version__ = "0.1.0"
