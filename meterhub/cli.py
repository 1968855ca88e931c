"""The ``meterhub`` console script.

Heavy modules (numba, fastapi, psycopg, paho) are imported inside the commands that need
them, so that ``meterhub decode`` and ``meterhub read`` start fast and need no database.
Exit codes follow CONTRACTS.md: 0 ok, 1 partly quarantined, 2 invalid input, 3 abnormal
reply, 4 no answer, 5 unreachable, 64 usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="meterhub",
    help="meterhub: meter reading, line loss and prepaid relay control.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def decode(
    hexdata: Annotated[list[str], typer.Argument(metavar="HEX...", help="Frame bytes as hex.")],
    protocol: Annotated[
        str, typer.Option("--protocol", help="auto | dlt645-2007 | dlt645-1997")
    ] = "auto",
) -> None:
    """Explain a DL/T 645 frame pasted from a log; always prints one JSON object."""
    from protocols.explain import explain

    obj, code = explain(" ".join(hexdata), protocol=protocol)
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    raise typer.Exit(code)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Option("--scenario", help="Scenario TOML file.")],
    truth: Annotated[Path | None, typer.Option("--truth", help="Write ground truth JSON.")] = None,
    fleet: Annotated[Path | None, typer.Option("--fleet", help="Write the fleet file.")] = None,
    forever: Annotated[bool, typer.Option("--forever", help="Keep running.")] = False,
) -> None:
    """Run a simulated fleet of meters, gateways and concentrators."""
    from simulators.runner import simulate_command

    raise typer.Exit(simulate_command(scenario=scenario, truth=truth, fleet=fleet, forever=forever))


def main() -> None:
    """Entry point of the console script: maps click's usage errors to exit code 64."""
    try:  # typer >= 0.29 vendors click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        from click import exceptions as cx  # type: ignore[no-redef]

    try:
        rv = app(standalone_mode=False)
    except cx.UsageError as exc:
        exc.show()
        sys.exit(64)
    except (cx.Abort, KeyboardInterrupt):
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except cx.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
