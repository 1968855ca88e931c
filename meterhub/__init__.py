"""meterhub: the thin application shell (settings, clock, CLI, provisioning)."""

from __future__ import annotations

__version__ = "0.1.0"
