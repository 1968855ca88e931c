"""meterhub storage package."""
