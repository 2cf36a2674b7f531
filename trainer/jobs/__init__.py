"""Jobs: the commands that chain the steps (a training run, the weekly pipeline, a snapshot)."""
