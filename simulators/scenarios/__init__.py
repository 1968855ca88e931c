"""Example scenario files for ``meterhub simulate``."""
