"""Protocol tests: make the shared case tables (``dlt645_cases``) importable.

pytest runs with ``--import-mode=importlib``, which does not put test directories on
``sys.path``; the table of published frames is shared by several test modules.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
