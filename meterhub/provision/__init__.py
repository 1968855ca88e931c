"""Provisioning of the private TimescaleDB and Mosquitto."""
