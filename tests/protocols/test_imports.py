"""R1: nothing under ``protocols/`` does I/O, sleeps or logs.

Every Python source file in the ``protocols`` tree (all subpackages, present and future) is
parsed and its imports are checked against a deny-list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import protocols

ROOT = Path(protocols.__file__).resolve().parent
# R1's list, plus the other ways to reach the network, processes or a database, and pymodbus
# (its PDU layer imports asyncio: the counterexample R1 names).
FORBIDDEN = {"asyncio", "socket", "serial", "paho", "psycopg", "psycopg_pool", "fastapi", "time",
             "logging", "selectors", "ssl", "subprocess", "requests", "httpx", "aiomqtt",
             "pymodbus", "uvicorn", "sqlite3"}
SOURCES = sorted(ROOT.rglob("*.py"))


def forbidden_imports(path: Path) -> list[str]:
    """Return ``"line: module"`` for every forbidden import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        bad += [f"{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return bad


def test_sources_found() -> None:
    assert ROOT / "dlt645" / "_frame.py" in SOURCES
    assert ROOT / "explain.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path: Path) -> None:
    assert forbidden_imports(path) == [], f"{path.relative_to(ROOT)} imports I/O modules"


def test_checker_catches_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport time\nfrom asyncio import sleep\nimport logging.handlers\n"
        "from . import socket\n__import__('serial')\nimportlib.import_module('paho.mqtt')\n"
    )
    assert forbidden_imports(sample) == ["2: time", "3: asyncio", "4: logging.handlers",
                                         "6: serial", "7: paho.mqtt"]
