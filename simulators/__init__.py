"""meterhub simulators package."""
