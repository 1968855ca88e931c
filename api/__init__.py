"""meterhub api package."""
