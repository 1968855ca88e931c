"""Register maps shipped with meterhub, one data file per meter model (no code per model)."""
