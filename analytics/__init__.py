"""meterhub analytics package."""
