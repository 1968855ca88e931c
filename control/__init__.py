"""meterhub control package."""
