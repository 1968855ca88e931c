"""``meterhub decode``: explain one DL/T 645 frame as the JSON object of CONTRACTS.md.

The object has exactly these keys: ``protocol``, ``address``, ``control``, ``direction``,
``abnormal``, ``follow_up``, ``function``, ``di``, ``values``, ``fields``, ``error_bits``,
``warnings``. A frame fault gives ``{"error": {"reason", "message"}}`` and exit code 2.

Only :mod:`protocols.dlt645` is imported (no numpy, pydantic or I/O), so the command starts
fast.
"""

from __future__ import annotations

from typing import Any

from .dlt645 import (
    KIND_1997,
    KIND_2007,
    REMOTE_COMMAND_NAMES,
    AbnormalResponse,
    Ack,
    ChangeBaudRequest,
    ChangeBaudResponse,
    ChangePasswordRequest,
    ChangePasswordResponse,
    ClearRequest,
    FrameError,
    FrameFault,
    FreezeRequest,
    Function1997,
    Kind,
    Message,
    ReadAddressRequest,
    ReadAddressResponse,
    ReadFollowUpRequest,
    ReadRequest,
    ReadResponse,
    RemoteControlRequest,
    RereadRequest,
    SecuredRemoteControlRequest,
    TimeSyncRequest,
    UnknownMessage,
    Version,
    WriteAddressRequest,
    WriteRequest,
    decode_frame_prefix,
    decode_message,
    decode_values,
    detect_version,
)

EXIT_OK = 0
EXIT_INVALID = 2

PROTOCOLS = {"auto": None, "dlt645-2007": Version.V2007, "dlt645-1997": Version.V1997}
"""Accepted ``--protocol`` values."""



def parse_hex(text: str) -> bytes:
    """Turn pasted hex into bytes: spaces ignored, case-insensitive, optional ``0x`` prefixes.

    Args:
        text: Hex text, possibly several arguments joined by spaces.

    Returns:
        The bytes.

    Raises:
        FrameError: ``BAD_HEX`` if the text is not an even number of hex digits.
    """
    tokens = text.replace(",", " ").split()
    cleaned = []
    for tok in tokens:
        t = tok[2:] if tok[:2] in ("0x", "0X") else tok
        cleaned.append(t)
    joined = "".join(cleaned)
    try:
        return bytes.fromhex(joined)
    except ValueError as exc:
        raise FrameError(
            f"not hexadecimal bytes: {text[:80]!r}", reason=FrameFault.BAD_HEX,
            data=text.encode("utf-8", "replace")[:256],
        ) from exc


def _pwd(level: int, password: int) -> dict[str, Any]:
    return {"password_level": level, "password": f"{password:06X}"}


def _di_text(di: int | None, version: Version) -> str | None:
    if di is None:
        return None
    return f"{di:08X}" if version is Version.V2007 else f"{di:04X}"


def _describe(msg: Message, version: Version) -> tuple[str | None, list, dict, list[str]]:
    """Return ``(di, values, fields, warnings)`` of a message."""
    values: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    warnings: list[str] = []
    di: int | None = None

    def add_values(di_: int, data: bytes) -> None:
        vals, warns = decode_values(di_, data, version)
        values.extend({"name": v.name, "value": v.value, "unit": v.unit} for v in vals)
        warnings.extend(warns)

    if isinstance(msg, ReadRequest):
        di = msg.di
        if msg.blocks is not None:
            fields["blocks"] = msg.blocks
        if msg.start is not None:
            fields["start"] = msg.start
    elif isinstance(msg, ReadFollowUpRequest):
        di = msg.di
        if msg.seq is not None:
            fields["seq"] = msg.seq
    elif isinstance(msg, RereadRequest):
        fields["reread"] = True
    elif isinstance(msg, ReadAddressRequest):
        pass
    elif isinstance(msg, WriteRequest):
        di = msg.di
        fields.update(_pwd(msg.level, msg.password))
        if msg.operator is not None:
            fields["operator"] = f"{msg.operator:08X}"
        add_values(msg.di, msg.data)
    elif isinstance(msg, WriteAddressRequest):
        fields["new_address"] = msg.new_address
    elif isinstance(msg, TimeSyncRequest):
        fields["time"] = msg.time
    elif isinstance(msg, FreezeRequest):
        fields.update(minute=msg.minute, hour=msg.hour, day=msg.day, month=msg.month)
    elif isinstance(msg, ChangeBaudRequest | ChangeBaudResponse):
        fields.update(baud=msg.bps, baud_code=msg.code)
    elif isinstance(msg, ChangePasswordRequest):
        di = msg.di
        fields.update(
            old_password_level=msg.old_level, old_password=f"{msg.old_password:06X}",
            new_password_level=msg.new_level, new_password=f"{msg.new_password:06X}",
        )
    elif isinstance(msg, ChangePasswordResponse):
        fields.update(_pwd(msg.level, msg.password))
    elif isinstance(msg, ClearRequest):
        fields.update(_pwd(msg.level, msg.password))
        if msg.operator is not None:
            fields["operator"] = f"{msg.operator:08X}"
        if msg.event_di is not None:
            fields["event_di"] = f"{msg.event_di:08X}"
    elif isinstance(msg, RemoteControlRequest):
        name = REMOTE_COMMAND_NAMES.get(msg.command)
        fields.update(
            command=name or f"unknown_{msg.command:02X}", command_code=msg.command,
            deadline=msg.deadline, **_pwd(msg.level, msg.password),
            operator=f"{msg.operator:08X}", reserved=msg.reserved,
        )
    elif isinstance(msg, SecuredRemoteControlRequest):
        fields.update(
            command="encrypted", **_pwd(msg.level, msg.password),
            operator=f"{msg.operator:08X}", ciphertext=msg.ciphertext.hex().upper(),
        )
    elif isinstance(msg, ReadResponse):
        di = msg.di
        if msg.seq is not None:
            fields["seq"] = msg.seq
        if msg.reread:
            fields["reread"] = True
        add_values(msg.di, msg.data)
    elif isinstance(msg, ReadAddressResponse):
        values.append({"name": "comm_address", "value": msg.address, "unit": None})
    elif isinstance(msg, Ack | AbnormalResponse):
        if isinstance(msg, AbnormalResponse):
            fields["error_word"] = msg.error
    elif isinstance(msg, UnknownMessage) and msg.data:
        fields["data"] = msg.data.hex().upper()
    return _di_text(di, version), values, fields, warnings


def explain(hex_text: str, protocol: str = "auto") -> tuple[dict[str, Any], int]:
    """Explain the first complete DL/T 645 frame in pasted hex.

    Args:
        hex_text: Hex digits (spaces ignored, case-insensitive, optional ``0x``).
        protocol: ``auto``, ``dlt645-2007`` or ``dlt645-1997``. ``auto`` uses
            :func:`protocols.dlt645.detect_version` (function code, then data length).

    Returns:
        ``(object, exit_code)``: the CONTRACTS.md decode object and 0, or
        ``{"error": {"reason", "message"}}`` and 2 for a frame fault, bad hex or an unknown
        protocol name.
    """
    if protocol not in PROTOCOLS:
        return {"error": {"reason": "bad_protocol",
                          "message": f"protocol must be one of {', '.join(PROTOCOLS)}"}}, \
            EXIT_INVALID
    try:
        raw = parse_hex(hex_text)
        frame, used = decode_frame_prefix(raw)
    except FrameError as exc:
        return {"error": {"reason": exc.reason.value, "message": str(exc)}}, EXIT_INVALID
    version = PROTOCOLS[protocol] or detect_version(frame)
    msg, msg_warnings = decode_message(frame, version)
    di, values, fields, warnings = _describe(msg, version)
    kinds = KIND_2007 if version is Version.V2007 else KIND_1997
    function = kinds.get(frame.function, Kind.UNKNOWN)
    if version is Version.V1997 and frame.function == Function1997.REREAD:
        fields.setdefault("reread", True)
    error_bits = list(msg.error_bits) if isinstance(msg, AbnormalResponse) else []
    all_warnings = [*msg_warnings, *warnings]
    if used < len(raw):
        all_warnings.append(
            f"{len(raw) - used} bytes after the frame ignored: {raw[used:].hex(' ').upper()}"
        )
    obj = {
        "protocol": version.value,
        "address": frame.address_text,
        "control": frame.control,
        "direction": "response" if frame.is_response else "request",
        "abnormal": frame.abnormal,
        "follow_up": frame.follow_up,
        "function": function.value,
        "di": di,
        "values": values,
        "fields": fields,
        "error_bits": error_bits,
        "warnings": all_warnings,
    }
    return obj, EXIT_OK
