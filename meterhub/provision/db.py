"""The provisioned TimescaleDB: a Debian root with PostgreSQL 17 and TimescaleDB, run privately.

Layout:

* ``<root_cache>/<suite>-pg17/`` — a read-only Debian root built once with ``debootstrap``
  (the suite pinned by name) holding Debian's ``postgresql-17`` and
  ``postgresql-17-timescaledb``; shared by every checkout on the machine, built under ``flock``.
* ``<state_dir>/db/root/`` — this checkout's copy of that root (hard links, so it costs no
  space), with the cluster's data directory at ``/srv/meterhub/data`` inside it.
* ``<state_dir>/db/db.json`` — the port and password; ``server.log`` — the server's log.

The server runs chrooted as the root's ``postgres`` user on 127.0.0.1 at a private port, with
``timescaledb`` preloaded. A running server is identified by its postmaster PID *and* the
chroot that process lives in, so a fresh clone never talks to another checkout's server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from meterhub.provision._util import (
    ProvisionError,
    file_lock,
    log,
    new_secret,
    pick_port,
    pid_alive,
    port_accepts,
    run,
    which,
    write_private,
)
from meterhub.settings import Settings

PG_MAJOR = 17
PACKAGES = (f"postgresql-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-timescaledb")
BUILT_MARKER = ".meterhub-built"
DATA_IN_ROOT = "/srv/meterhub/data"
RUN_IN_ROOT = "/srv/meterhub/run"
BIN_IN_ROOT = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
DB_NAME = "meterhub"
DB_USER = "meterhub"


@dataclass(frozen=True, slots=True)
class DbPaths:
    """Where this checkout's database lives."""

    cache_root: Path
    state: Path

    @property
    def root(self) -> Path:
        """This checkout's copy of the Debian root."""
        return self.state / "root"

    @property
    def data(self) -> Path:
        """The cluster's data directory, seen from the host."""
        return self.root / DATA_IN_ROOT.lstrip("/")

    @property
    def config(self) -> Path:
        """Port and password of this checkout's cluster."""
        return self.state / "db.json"

    @property
    def log(self) -> Path:
        """The server log."""
        return self.state / "server.log"


def paths(settings: Settings) -> DbPaths:
    """The database paths for ``settings``."""
    return DbPaths(
        cache_root=settings.root_cache / f"{settings.debian_suite}-pg{PG_MAJOR}",
        state=settings.state_dir / "db",
    )


def _unmount_all(target: Path) -> None:
    if not target.exists():
        return
    out = run(["findmnt", "-R", "-n", "-o", "TARGET", str(target)], check=False).stdout
    for mnt in sorted(out.split(), key=len, reverse=True):
        run(["umount", "-l", mnt], check=False)


def _remove_tree(target: Path) -> None:
    if target.exists():
        _unmount_all(target)
        run(["rm", "-rf", "--one-file-system", str(target)])


def build_root(settings: Settings) -> Path:
    """Build the shared Debian root once (``debootstrap`` + the two packages); reuse it after.

    Returns:
        The path of the built root.

    Raises:
        ProvisionError: debootstrap is missing, or the build failed.
    """
    p = paths(settings)
    root = p.cache_root
    if (root / BUILT_MARKER).is_file():
        return root
    if os.geteuid() != 0:
        raise ProvisionError(
            "building the TimescaleDB root needs root (debootstrap, chroot); "
            "or set METERHUB_DATABASE_URL to an existing TimescaleDB"
        )
    with file_lock(root.parent / f".{root.name}.lock"):
        if (root / BUILT_MARKER).is_file():
            return root
        if which("debootstrap") is None:
            raise ProvisionError(
                "debootstrap is not installed: apt-get install debootstrap "
                "(or set METERHUB_DATABASE_URL to an existing TimescaleDB)"
            )
        tmp = root.with_name(root.name + ".building")
        _remove_tree(tmp)
        _remove_tree(root)
        started = time.monotonic()
        log(f"building a Debian {settings.debian_suite} root for TimescaleDB in {root} ...")
        try:
            run(
                ["debootstrap", "--variant=minbase", settings.debian_suite, str(tmp)],
                timeout=1800,
            )
            conf = tmp / "etc/postgresql-common/createcluster.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text("create_main_cluster = false\n")
            env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            run([_chroot(), str(tmp), "apt-get", "update", "-qq"], env=env, timeout=900)
            run(
                [_chroot(), str(tmp), "apt-get", "install", "-y", "-qq",
                 "--no-install-recommends", *PACKAGES],
                env=env, timeout=1800,
            )
            run([_chroot(), str(tmp), "apt-get", "clean"], env=env)
        finally:
            _unmount_all(tmp)
        for lists in (tmp / "var/lib/apt/lists").glob("*_*"):
            lists.unlink(missing_ok=True)
        (tmp / BUILT_MARKER).write_text(f"{settings.debian_suite} {' '.join(PACKAGES)}\n")
        tmp.rename(root)
        log(f"root built in {time.monotonic() - started:.0f} s")
    return root


def _copy_root(settings: Settings) -> None:
    p = paths(settings)
    marker = p.root / BUILT_MARKER
    if marker.is_file():
        return
    shared = build_root(settings)
    _remove_tree(p.root)
    p.state.mkdir(parents=True, exist_ok=True)
    tmp = p.state / "root.copying"
    _remove_tree(tmp)
    proc = run(["cp", "-al", str(shared), str(tmp)], check=False)
    if proc.returncode != 0:  # another file system: a real copy
        _remove_tree(tmp)
        run(["cp", "-a", str(shared), str(tmp)])
    tmp.rename(p.root)


def _chroot() -> str:
    path = which("chroot")
    if path is None:
        raise ProvisionError("chroot (coreutils) not found")
    return path


def _ids(root: Path, user: str = "postgres") -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise ProvisionError(f"user {user} missing in {root}")


def _load_config(p: DbPaths) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(p.config.read_text())
        return data
    except (OSError, ValueError):
        return None


def _init_cluster(settings: Settings) -> dict[str, object]:
    p = paths(settings)
    config = _load_config(p)
    if config is not None and (p.data / "PG_VERSION").is_file():
        return config
    uid, gid = _ids(p.root)
    password = new_secret()
    (p.root / RUN_IN_ROOT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    if p.data.exists():
        shutil.rmtree(p.data)
    p.data.mkdir(parents=True)
    pwfile = p.root / "srv/meterhub/.pw"
    write_private(pwfile, password + "\n")
    run([_chroot(), str(p.root), "chown", "-R", f"{uid}:{gid}", "/srv/meterhub"])
    run(
        [_chroot(), f"--userspec={uid}:{gid}", str(p.root), f"{BIN_IN_ROOT}/initdb",
         "-D", DATA_IN_ROOT, "-U", "postgres", "--auth-local=peer",
         "--auth-host=scram-sha-256", "--pwfile=/srv/meterhub/.pw", "-E", "UTF8",
         "--locale=C.UTF-8"],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, timeout=300,
    )
    pwfile.unlink()
    conf = p.data / "postgresql.auto.conf"
    with conf.open("a") as fh:
        fh.write(
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{RUN_IN_ROOT}'\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "max_connections = 200\n"
            "shared_buffers = '256MB'\n"
            "max_wal_size = '2GB'\n"
            "timezone = 'UTC'\n"
        )
    config = {"port": None, "password": password, "user": "postgres"}
    write_private(p.config, json.dumps(config))
    return config


def running_pid(settings: Settings) -> int | None:
    """PID of this checkout's postmaster, or None when it is not running."""
    p = paths(settings)
    try:
        pid = int((p.data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        proc_root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None
    if Path(proc_root) != p.root.resolve():
        return None  # the PID now belongs to another process
    return pid


def url(settings: Settings, *, dbname: str = DB_NAME) -> str:
    """The ``postgresql://`` URL of the provisioned database (it need not be running)."""
    if settings.database_url is not None:
        return settings.database_url
    config = _load_config(paths(settings))
    if config is None or not config.get("port"):
        raise ProvisionError("the database has not been provisioned yet: run 'meterhub db up'")
    return f"postgresql://{config['user']}:{config['password']}@127.0.0.1:{config['port']}/{dbname}"


def up(settings: Settings) -> str:
    """Provision (if needed) and start this checkout's TimescaleDB; idempotent.

    Returns:
        The database URL.

    Raises:
        ProvisionError: it could not be built or started.
    """
    p = paths(settings)
    _copy_root(settings)
    config = _init_cluster(settings)
    if running_pid(settings) is not None and config.get("port"):
        return url(settings)
    stale = p.data / "postmaster.pid"
    if stale.exists():
        stale.unlink()
    port = pick_port(settings.db_port or _int(config.get("port")), 25432, 29999)
    config["port"] = port
    write_private(p.config, json.dumps(config))
    uid, gid = _ids(p.root)
    logfh = p.log.open("ab")
    subprocess.Popen(
        [_chroot(), f"--userspec={uid}:{gid}", str(p.root), f"{BIN_IN_ROOT}/postgres",
         "-D", DATA_IN_ROOT, "-p", str(port)],
        stdin=subprocess.DEVNULL, stdout=logfh, stderr=logfh, start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    logfh.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_accepts(port) and running_pid(settings) is not None and _ready(settings):
            break
        time.sleep(0.2)
    else:
        tail = p.log.read_text(errors="replace").strip().splitlines()[-10:]
        raise ProvisionError("TimescaleDB did not start:\n" + "\n".join(tail))
    _ensure_database(settings)
    return url(settings)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _ready(settings: Settings) -> bool:
    import psycopg

    try:
        with psycopg.connect(url(settings, dbname="postgres"), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _ensure_database(settings: Settings) -> None:
    import psycopg

    with psycopg.connect(url(settings, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def down(settings: Settings, *, timeout: float = 60) -> bool:
    """Stop this checkout's server cleanly (fast shutdown). Returns True if one was running."""
    pid = running_pid(settings)
    if pid is None:
        return False
    os.kill(pid, 2)  # SIGINT: fast shutdown, clean checkpoint
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, 3)  # SIGQUIT: immediate
    return True


def destroy(settings: Settings) -> None:
    """Stop the server and delete this checkout's copy and data (the shared root stays)."""
    down(settings)
    _remove_tree(paths(settings).state)


def client_binary(settings: Settings, name: str) -> list[str]:
    """A command prefix running the root's own client binary (e.g. ``pg_dump``)."""
    p = paths(settings)
    _copy_root(settings)
    return [_chroot(), str(p.root), f"{BIN_IN_ROOT}/{name}"]
