"""``meterhub read``: one on-demand DL/T 645 read through a gateway, no database needed.

With ``--json`` the reply is printed as exactly the decode object of CONTRACTS.md (built by
:func:`protocols.explain.explain` from the reply frame; follow-up frames are merged into one
reply first). Exit codes: 0 ok, 2 undecodable reply, 3 abnormal reply, 4 no answer or
timeout, 5 connection refused or unreachable, 64 usage error.

Only the standard library, :mod:`protocols` and the DL/T 645 link are imported, so the command
starts in well under a second.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from collector.dlt645 import Dlt645Link, LinkParams, ReadResult, frame_bytes
from collector.errors import AbnormalReply, BadReply, NoAnswer, Unreachable
from collector.errors import LinkError as _LinkError
from protocols.dlt645 import EncodeError, ReadResponse, Version, pack, parse_address
from protocols.explain import explain

EXIT_OK = 0
EXIT_UNDECODABLE = 2
EXIT_ABNORMAL = 3
EXIT_NO_ANSWER = 4
EXIT_UNREACHABLE = 5
EXIT_USAGE = 64

_VERSIONS = {"dlt645-2007": Version.V2007, "dlt645-1997": Version.V1997, "auto": Version.V2007}


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _fail(as_json: bool, code: int, reason: str, message: str) -> int:
    if as_json:
        _print_json({"error": {"reason": reason, "message": message}})
    sys.stderr.write(f"meterhub read: {message}\n")
    return code


def decode_object(result: ReadResult, protocol: str) -> dict[str, Any]:
    """The CONTRACTS.md decode object of a (possibly merged) read.

    Args:
        result: The read, follow-up frames merged.
        protocol: ``dlt645-2007`` or ``dlt645-1997``.

    Returns:
        The object; ``follow_up`` is true when follow-up frames were merged, and a warning
        says how many frames the reply took.
    """
    if len(result.frames) == 1:
        obj, _code = explain(frame_bytes(result.frames[0]).hex(), protocol)
        return obj
    try:
        wire = pack(ReadResponse(result.response.address, result.response.di,
                                 result.response.data, version=result.response.version))
        obj, _code = explain(wire.hex(), protocol)
    except EncodeError:  # longer than one frame can carry: explain frame by frame
        obj, _code = explain(frame_bytes(result.frames[0]).hex(), protocol)
        for frame in result.frames[1:]:
            more, _ = explain(frame_bytes(frame).hex(), protocol)
            obj["values"].extend(more.get("values", []))
            obj["warnings"].extend(more.get("warnings", []))
    obj["follow_up"] = True
    obj["warnings"].append(f"reply merged from {len(result.frames)} frames")
    return obj


def _human(obj: dict[str, Any]) -> str:
    parts = []
    for v in obj.get("values", []):
        unit = f" {v['unit']}" if v.get("unit") else ""
        parts.append(f"{v['name']}={v['value']}{unit}")
    line = f"{obj['address']} {obj['di']} " + (" ".join(parts) or "(no values)")
    if obj.get("warnings"):
        line += "  [" + "; ".join(obj["warnings"]) + "]"
    return line


async def _read(gateway: str, address: str, di: int, version: Version,
                timeout: float) -> ReadResult:
    params = LinkParams(timeout=timeout, connect_timeout=timeout)
    link: Any
    if gateway.startswith("serial://"):
        from collector.serial import open_link  # pyserial only when a serial port is named

        link = open_link("cli", gateway, params)
    else:
        link = Dlt645Link("cli", url=gateway, params=params)
    try:
        return await link.read(address, di, version=version)
    finally:
        await link.close()


def read_command(gateway: str, address: str, di: str, protocol: str = "dlt645-2007",
                 as_json: bool = False, timeout: float = 5.0) -> int:
    """Read one data identifier from one meter and print it.

    Args:
        gateway: ``tcp://HOST:PORT`` (or ``tls://HOST:PORT``) of the gateway.
        address: The meter's 12-digit address.
        di: The data identifier in hex (8 digits for 2007, 4 for 1997).
        protocol: ``dlt645-2007`` (default) or ``dlt645-1997``.
        as_json: Print the decode object instead of a human line.
        timeout: Seconds to wait for the reply (one retry follows a timeout).

    Returns:
        The exit code (0, 2, 3, 4, 5 or 64).
    """
    version = _VERSIONS.get(protocol)
    if version is None:
        return _fail(as_json, EXIT_USAGE, "bad_protocol",
                     "--protocol must be dlt645-2007 or dlt645-1997")
    width = 8 if version is Version.V2007 else 4
    text = di.strip().removeprefix("0x").removeprefix("0X")
    if len(text) != width or any(c not in "0123456789abcdefABCDEF" for c in text):
        return _fail(as_json, EXIT_USAGE, "bad_di",
                     f"--di must be {width} hex digits for {protocol}, got {di!r}")
    try:
        parse_address(address)
    except EncodeError as exc:
        return _fail(as_json, EXIT_USAGE, "bad_address", str(exc))
    if not timeout > 0:
        return _fail(as_json, EXIT_USAGE, "bad_timeout", "--timeout must be positive")
    name = "dlt645-2007" if version is Version.V2007 else "dlt645-1997"
    try:
        result = asyncio.run(_read(gateway, address, int(text, 16), version, timeout))
    except ValueError as exc:
        return _fail(as_json, EXIT_USAGE, "bad_gateway", str(exc))
    except AbnormalReply as exc:
        obj, _ = explain(exc.raw.hex(), name)
        if as_json:
            _print_json(obj)
        else:
            sys.stdout.write(f"{obj['address']}: abnormal reply: "
                             f"{', '.join(obj['error_bits']) or 'no error bits'}\n")
        return EXIT_ABNORMAL
    except BadReply as exc:
        return _fail(as_json, EXIT_UNDECODABLE, exc.reason, str(exc))
    except Unreachable as exc:
        return _fail(as_json, EXIT_UNREACHABLE, "unreachable", str(exc))
    except NoAnswer as exc:
        return _fail(as_json, EXIT_NO_ANSWER, "no_answer", str(exc))
    except _LinkError as exc:  # LinkClosed: the gateway hung up without an answer
        return _fail(as_json, EXIT_NO_ANSWER, "no_answer", str(exc))
    obj = decode_object(result, name)
    if as_json:
        _print_json(obj)
    else:
        sys.stdout.write(_human(obj) + "\n")
    return EXIT_OK
