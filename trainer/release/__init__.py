"""Release: the model artifact, the quality gate that decides, and where artifacts are stored."""
