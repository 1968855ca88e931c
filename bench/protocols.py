"""Benchmark: DL/T 645 frames decoded per second.

Run: ``.venv/bin/python bench/protocols.py`` (about 20-40 s). Writes
``bench/results/protocols.json``.

What is measured, on one mixed set of real-looking frames (published captures plus frames built
with the codec: reads and replies of energies, blocks, voltages, status word 3, 1C trip/close,
abnormal replies, 1997 reads), each path timed over the same frames in the same run:

* ``copy`` (the baseline): ``bytearray(frame)`` per frame, i.e. what merely touching the bytes
  costs in CPython; every other figure is also given as a ratio against it.
* ``frame``: :func:`protocols.dlt645.decode_frame` (checks, checksum, 0x33 offset removed).
* ``full``: ``decode_frame`` + ``detect_version`` + ``decode_message`` + registry values.
* ``stream``: :class:`~protocols.dlt645.FrameDecoder` fed the concatenated frames in 64-byte
  chunks.
* ``pypi_dlt645``: PyPI's ``dlt645`` package, ``DLT645Protocol.deserialize`` (its
  frame-level decoder; its value decoding lives inside its client service, bound to a
  transport). It runs in its own virtual environment ``bench/.venv-dlt645`` (git-ignored,
  created on first run with ``pip install dlt645``), interleaved there with meterhub's
  ``decode_frame`` in the same interpreter, which gives ``ratio_frame_vs_pypi_dlt645``. It is
  never a dependency of meterhub nor a source of its tables. If it cannot be installed the
  results say so. The two decoded data fields are compared frame by frame
  (``same_data_as_meterhub``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protocols.dlt645 import (  # noqa: E402 - after the path set-up for direct runs
    AbnormalResponse,
    FrameDecoder,
    ReadRequest,
    ReadResponse,
    RemoteCommand,
    RemoteControlRequest,
    Version,
    decode_frame,
    decode_message,
    detect_version,
    pack,
)

RESULTS = REPO / "bench" / "results" / "protocols.json"
VENV = REPO / "bench" / ".venv-dlt645"
REPEAT = 20000  # frames per timed pass
PASSES = 7  # best of

# published captures (sources as in tests/protocols/dlt645_cases.py)
PUBLISHED = [
    "68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16",  # [S1]
    "68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16",  # [S1]
    "68 61 01 00 00 00 00 68 91 07 33 34 35 35 CC 7C 33 16 16",  # [WS]
    "68 61 10 01 30 12 15 68 1C 10 35 6A 39 35 34 33 33 33 4D 33 33 33 33 63 45 CC 2C 16",  # [CL]
    "68 61 10 01 30 12 15 68 9C 00 35 16",  # [CL]
    "68 61 10 01 30 12 15 68 91 06 36 38 33 37 83 33 BE 16",  # [CL]
    "68 12 90 78 56 34 12 68 D1 01 35 8D 16",  # [CS]
    "FE FE FE FE 68 34 69 17 08 17 20 68 81 06 43 F3 39 39 3A 4C 78 16",  # [KT] 1997
    "68 95 32 06 00 00 00 68 81 16 52 C3 6C 33 33 33 33 33 33 33 36 33 33 33 57 33 33 33"
    " 45 33 33 33 B7 16",  # [KT] 1997 block
]


def mixed_frames() -> list[bytes]:
    """The distinct frames of the benchmark set."""
    addr = "000012345678"
    built = [
        pack(ReadRequest(addr, 0x00010000), preamble=4),
        pack(ReadResponse.from_values(addr, 0x0001FF00, [12345.67, 1000.0, 2000.0, 3000.0,
                                                         6345.67]), preamble=2),
        pack(ReadResponse.from_values(addr, 0x0201FF00, [229.8, 231.0, 230.4])),
        pack(ReadResponse.from_values(addr, 0x0202FF00, [5.123, -0.25, 1.0])),
        pack(ReadResponse.from_values(addr, 0x0203FF00, [2.5, 1.0, 0.75, 0.75])),
        pack(ReadResponse.from_values(addr, 0x04000503, [0x0050])),
        pack(ReadResponse.from_values(addr, 0x05060101, [8000.12, 2000.0, 2000.0, 2000.0,
                                                         2000.12])),
        pack(ReadResponse.from_values(addr, 0x05060001, ["2026-11-23 00:00"])),
        pack(RemoteControlRequest(addr, RemoteCommand.CLOSE, "2099-12-31 23:59:59"), preamble=4),
        pack(AbnormalResponse(addr, 0x11, 0x02)),
        pack(ReadRequest(addr, 0x9010, version=Version.V1997), preamble=2),
        pack(ReadResponse.from_values(addr, 0xB611, [220], version=Version.V1997)),
    ]
    return [bytes.fromhex(w) for w in PUBLISHED] + built


def best_rates(paths: dict[str, Any], frames: list[bytes]) -> dict[str, float]:
    """Frames per second of each path: best of PASSES rounds, the paths interleaved per round.

    Interleaving spreads any background load over all paths alike, which keeps the ratios
    steady even when the absolute figures move.
    """
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(PASSES):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn(frames)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: len(frames) / t for name, t in best.items()}


def run_copy(frames: list[bytes]) -> None:
    for f in frames:
        bytearray(f)


def run_frame(frames: list[bytes]) -> None:
    for f in frames:
        decode_frame(f)


def run_full(frames: list[bytes]) -> None:
    for f in frames:
        frame = decode_frame(f)
        msg, _ = decode_message(frame, detect_version(frame))
        if isinstance(msg, ReadResponse):
            msg.values()


def run_stream(frames: list[bytes]) -> None:
    data = b"".join(frames)
    dec = FrameDecoder()
    n = 0
    for i in range(0, len(data), 64):
        dec.feed(data[i : i + 64])
        for _ in dec:
            n += 1
    assert n == len(frames)


# Runs inside bench/.venv-dlt645. meterhub's decode_frame is timed there too, interleaved
# with the package's decoder in the same interpreter (protocols/ has no dependencies; the
# repository root is put on sys.path, nothing is installed into that venv).
_PYPI_SCRIPT = r"""
import json, sys, time
from dlt645 import DLT645Protocol
sys.path.insert(0, sys.argv[3])
from protocols.dlt645 import decode_frame
frames = [bytes.fromhex(h) for h in json.load(sys.stdin)["frames"]]
distinct = [bytes.fromhex(h) for h in json.load(open(sys.argv[1]))["distinct"]]
decoded = [DLT645Protocol.deserialize(f).data.hex() for f in distinct]
def theirs():
    for f in frames:
        DLT645Protocol.deserialize(f)
def ours():
    for f in frames:
        decode_frame(f)
best = {"theirs": float("inf"), "ours": float("inf")}
for _ in range(int(sys.argv[2])):
    for name, fn in (("theirs", theirs), ("ours", ours)):
        t0 = time.perf_counter()
        fn()
        best[name] = min(best[name], time.perf_counter() - t0)
import importlib.metadata as md
print(json.dumps({"rate": len(frames) / best["theirs"], "ours": len(frames) / best["ours"],
                  "decoded": decoded, "version": md.version("dlt645")}))
"""


def pypi_dlt645(frames: list[bytes], distinct: list[bytes]) -> dict[str, object]:
    """Time PyPI's dlt645 on the same frames in its own venv, or say why it could not."""
    py = VENV / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, timeout=120)
        probe = subprocess.run([str(py), "-c", "import dlt645"], capture_output=True,
                               timeout=60, check=False)
        if probe.returncode != 0:
            subprocess.run([str(py), "-m", "pip", "install", "-q", "dlt645"], check=True,
                           capture_output=True, timeout=300)
        tmp = RESULTS.parent / ".distinct.json"
        tmp.write_text(json.dumps({"distinct": [f.hex() for f in distinct]}))
        try:
            proc = subprocess.run(
                [str(py), "-c", _PYPI_SCRIPT, str(tmp), str(PASSES), str(REPO)],
                input=json.dumps({"frames": [f.hex() for f in frames]}),
                capture_output=True, text=True, timeout=300, check=True,
            )
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        if isinstance(stderr, bytes):
            stderr = stderr.decode("utf-8", "replace")
        return {"available": False, "reason": f"{type(exc).__name__}: {exc} {stderr[-400:]}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = [decode_frame(f).data.hex() for f in distinct]
    agree = sum(a == b for a, b in zip(ours, out["decoded"], strict=True))
    return {"available": True, "version": out["version"], "rate": out["rate"],
            "meterhub_frame_rate_same_process": out["ours"],
            "same_data_as_meterhub": f"{agree}/{len(distinct)}"}


def main() -> int:
    """Run the benchmark and write the results file."""
    distinct = mixed_frames()
    frames = [distinct[i % len(distinct)] for i in range(REPEAT)]
    started = time.perf_counter()
    rates = best_rates(
        {"copy": run_copy, "frame": run_frame, "full": run_full, "stream": run_stream}, frames
    )
    pypi = pypi_dlt645(frames, distinct)
    copy = rates["copy"]
    result: dict[str, object] = {
        "benchmark": "DL/T 645 frames decoded per second",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "frames_per_pass": len(frames),
        "distinct_frames": len(distinct),
        "mean_frame_bytes": round(sum(map(len, frames)) / len(frames), 1),
        "passes": PASSES,
        "frames_per_second": {k: round(v) for k, v in rates.items()},
        "ratio_vs_copy": {k: round(v / copy, 4) for k, v in rates.items()},
        "pypi_dlt645": pypi,
    }
    if pypi.get("available"):
        pypi_rate = float(pypi["rate"])  # type: ignore[arg-type]
        ours_there = float(pypi["meterhub_frame_rate_same_process"])  # type: ignore[arg-type]
        pypi["rate"] = round(pypi_rate)
        pypi["meterhub_frame_rate_same_process"] = round(ours_there)
        # same-process, interleaved ratio: meterhub decode_frame vs dlt645 deserialize
        result["ratio_frame_vs_pypi_dlt645"] = round(ours_there / pypi_rate, 2)
        # the full decode (frame + message + values) against dlt645's frame-only decode,
        # scaled through the two frame-level figures of the two processes
        result["ratio_full_vs_pypi_dlt645_frame"] = round(
            rates["full"] / rates["frame"] * ours_there / pypi_rate, 2)
        pypi["ratio_vs_copy_estimated"] = round(
            pypi_rate / ours_there * rates["frame"] / copy, 4)
    result["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
