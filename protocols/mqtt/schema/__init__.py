"""Committed JSON Schema files of the concentrator payloads (``v1.json``), shipped as data."""
