"""The dbt project on both engines: models, tests and their results."""
