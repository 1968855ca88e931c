"""meterhub protocols package."""
