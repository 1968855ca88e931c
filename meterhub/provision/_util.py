"""Small helpers shared by the database and broker provisioning."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path


class ProvisionError(Exception):
    """Provisioning failed; the message says what to do."""


def log(message: str) -> None:
    """Progress for people, on stderr."""
    sys.stderr.write(f"meterhub: {message}\n")
    sys.stderr.flush()


def run(
    cmd: Sequence[str], *, check: bool = True, env: dict[str, str] | None = None,
    input: str | None = None, timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise :class:`ProvisionError` on failure."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, env=env, input=input, timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ProvisionError(f"{cmd[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProvisionError(f"{' '.join(cmd[:3])} timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise ProvisionError(
            f"{' '.join(cmd[:4])} failed (exit {proc.returncode}):\n" + "\n".join(tail)
        )
    return proc


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None, low: int, high: int) -> int:
    """Return ``preferred`` if free, else a free port in [low, high)."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    start = low + secrets.randbelow(high - low)
    for i in range(high - low):
        port = low + (start - low + i) % (high - low)
        if port_is_free(port):
            return port
    raise ProvisionError(f"no free port in {low}..{high}")


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists and has not exited.

    A server started by this very process stays a zombie after it exits until it is reaped:
    it is reaped here and counts as gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' if gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def write_private(path: Path, text: str) -> None:
    """Write a file readable only by its owner, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def new_secret() -> str:
    """A random password safe in URLs."""
    return secrets.token_urlsafe(18)


def which(name: str) -> str | None:
    """``shutil.which`` also looking in the sbin directories."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
