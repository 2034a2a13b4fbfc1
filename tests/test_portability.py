"""Windows and macOS as far as this Linux machine can check: every module imports without fcntl and resource, the
run folder's lock works through msvcrt's byte-range lock (played here by POSIX record locks), peak memory is
asked without resource, and a postgresql:// storage without psycopg says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cnnlab.errors import CnnlabError

WITHOUT_POSIX = """
import fcntl, os, subprocess, sys, types
import torch  # first: it imports subprocess, which would take the fake msvcrt below for Windows
#               cnnlab's own imports (and torchvision's) then find neither fcntl nor resource
msvcrt = types.ModuleType("msvcrt")  # Windows' byte-range lock, played by a POSIX record lock of the same range
msvcrt.LK_NBLCK = 2
def locking(fd, mode, n):
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, n, os.lseek(fd, 0, os.SEEK_CUR), 0)
msvcrt.locking = locking
sys.modules.update(fcntl=None, resource=None, msvcrt=msvcrt)
"""


def python(code: str, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_every_module_imports_without_fcntl_and_resource():
    done = python(
        WITHOUT_POSIX
        + """
import importlib, pkgutil, cnnlab
names = [m.name for m in pkgutil.walk_packages(cnnlab.__path__, "cnnlab.") if m.name != "cnnlab.__main__"]  # it runs
for name in names:
    importlib.import_module(name)
from cnnlab.device import process_peak_mb
print(len(names), process_peak_mb())
"""
    )
    assert done.returncode == 0, done.stderr
    count, peak = done.stdout.split()
    assert int(count) > 80 and peak == "None"  # Linux has no windll: unknown, not a crash


def test_the_run_lock_without_fcntl_refuses_a_second_holder_and_names_the_first(tmp_path):
    hold = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WITHOUT_POSIX
            + """
import time
from cnnlab.runfolder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(60)
""",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hold.stdout.readline().strip() == "held"
        second = python(
            WITHOUT_POSIX
            + """
from cnnlab.runfolder import RunFolder
from cnnlab.errors import CnnlabError
try:
    with RunFolder(sys.argv[1]).lock():
        print("taken")
except CnnlabError as e:
    print(e)
""",
            tmp_path,
        )
        assert f"is being trained by process {hold.pid} on" in second.stdout, second.stderr
    finally:
        hold.kill()
        hold.wait()
    again = python(
        WITHOUT_POSIX
        + """
from cnnlab.runfolder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("taken")
""",
        tmp_path,
    )
    assert again.stdout.strip() == "taken", again.stderr  # the lock ended with its process


def test_peak_memory_where_resource_tells():
    from cnnlab.device import process_peak_mb

    assert 10 < process_peak_mb() < 100_000  # MiB of this process (kB from Linux's getrusage)


def test_postgresql_storage_without_psycopg_names_the_extra(monkeypatch):
    from cnnlab.sweep.storage import open_storage

    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[postgres\]'"):
        open_storage("postgresql://someone@localhost:9/nowhere", attempts=1)
