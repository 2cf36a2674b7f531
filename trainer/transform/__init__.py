"""Transform: runs the dbt project (raw tables -> clean interactions, splits, negatives, marts)."""
