"""meterhub collector package."""
