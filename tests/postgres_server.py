"""A real PostgreSQL server for tests, from Debian's packages: initdb in a temporary folder, its own port on
loopback, trust authentication, stopped and removed afterwards. As root (CI), the server runs as the
`postgres` user, since PostgreSQL refuses to run as root. Missing binaries fail the test: CI installs them."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HINT = "install Debian's postgresql package (scripts/install-system-packages.sh does; so does .ci/run via make)"


def server_bin() -> Path:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found and Path(found).resolve().with_name("pg_ctl").exists():
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    if not versions:
        pytest.fail(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; {HINT}"
        )
    return Path(versions[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_server_user(folder: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a user it accepts (not root)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"running as root, and there is no 'postgres' user to run the server as; {HINT}")
    os.chown(folder, user.pw_uid, user.pw_gid)
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]


def _command(prefix: list[str], args: list[str]) -> list[str]:
    return prefix + ([shlex.join(args)] if prefix[:1] == ["su"] else args)


def _run(prefix: list[str], args: list[str]) -> None:
    done = subprocess.run(
        _command(prefix, args), capture_output=True, text=True, timeout=120, cwd="/"
    )  # any user may be in /
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def postgres_server():
    """(host, port, user) of a running server; removed at the end of the session."""
    import psycopg

    bindir = server_bin()
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))  # under /tmp: the postgres user can reach it
    prefix = as_server_user(folder)
    data = folder / "data"
    _run(prefix, [str(bindir / "initdb"), "-D", str(data), "-U", "cnnlab", "--auth=trust", "-E", "UTF8", "--no-sync"])
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    _run(
        prefix,
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
    )
    try:
        psycopg.connect(host="127.0.0.1", port=port, user="cnnlab", dbname="postgres").close()
        yield "127.0.0.1", port, "cnnlab"
    finally:
        stop(data)
        shutil.rmtree(folder, ignore_errors=True)


def stop(data: Path) -> None:
    """Immediate shutdown (SIGQUIT to the postmaster), faster than pg_ctl's polling; the data is thrown away."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


_numbers = itertools.count()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the test server, as a storage URL."""
    import psycopg

    host, port, user = postgres_server
    name = f"sweep{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://{user}@{host}:{port}/{name}"
