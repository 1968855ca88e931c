"""meterhub storage: TimescaleDB schema, migrations and SQL repository functions."""
