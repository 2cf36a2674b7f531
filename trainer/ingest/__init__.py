"""Ingest: the scraped CSV (or a synthetic one) -> raw tables; every bad line a recorded reject."""
