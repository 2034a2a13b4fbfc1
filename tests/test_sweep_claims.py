"""Claims through the study storage: several processes (and a real PostgreSQL server) never run a cell twice,
a dead worker's cell is taken over, and a dead holder's lock is broken."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from cnnlab.sweep import claims
from cnnlab.sweep.claims import Board
from cnnlab.sweep.storage import open_storage

CLAIMER = Path(__file__).with_name("sweep_claimer.py")
# Four claimers start together (a ready barrier), and each cell takes 50 ms of "work": with no work one process,
# scheduled first on two busy cores, could claim all 30 cells before the others woke, and nothing would race.
RACE = ("--barrier", "4", "--work", "0.05")


def start_claimers(url: str, count: int, cells: int, out: Path, *extra: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, str(CLAIMER), url, "race", str(cells), str(out), *extra])
        for _ in range(count)
    ]


def assert_each_cell_once(out: Path, cells: int, procs: list[subprocess.Popen]) -> None:
    for p in procs:
        assert p.wait(timeout=120) == 0
    lines = out.read_text().split()
    ran = collections.Counter(lines[0::2])
    assert sorted(ran) == [f"cell-{i:03d}" for i in range(cells)]
    assert set(ran.values()) == {1}, {c: n for c, n in ran.items() if n > 1}
    assert len(set(lines[1::2])) > 1, "only one process did any work: the test did not race"


def test_sqlite_several_processes_never_claim_one_cell_twice(tmp_path):
    """Four processes start together on a fresh SQLite file (creating the study, enqueueing, claiming);
    without BEGIN IMMEDIATE this loses: some 35 double claims in 200 trials, 4 processes (see storage.py)."""
    out = tmp_path / "ran.txt"
    procs = start_claimers(f"sqlite:///{tmp_path / 'study.db'}", 4, 30, out, *RACE)
    assert_each_cell_once(out, 30, procs)


def test_postgres_several_processes_never_claim_one_cell_twice(tmp_path, postgres_url):
    out = tmp_path / "ran.txt"
    procs = start_claimers(postgres_url, 4, 30, out, *RACE)
    assert_each_cell_once(out, 30, procs)


def test_cell_of_a_killed_worker_is_taken_over_and_run_once_more(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "ran.txt"
    holder = start_claimers(url, 1, 3, out, "--hold")[0]
    deadline = time.time() + 60
    while not (out.exists() and out.read_text()):
        assert time.time() < deadline and holder.poll() is None
        time.sleep(0.05)
    held = out.read_text().split()[0]
    board = Board(open_storage(url), "race", [f"cell-{i:03d}" for i in range(3)], "test-definition")
    assert board.sync().running == 1  # alive: not taken over
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    rest = start_claimers(url, 2, 3, out)
    for p in rest:
        assert p.wait(timeout=120) == 0
    ran = collections.Counter(out.read_text().split()[0::2])
    assert ran == {**{f"cell-{i:03d}": 1 for i in range(3)}, held: 2}
    trials = board.trials()
    stale = [t for t in trials if t.user_attrs.get("outcome") == "stale"]
    assert [t.user_attrs["cell"] for t in stale] == [held] and stale[0].state == TrialState.FAIL
    assert board.status().all_done


def test_stale_heartbeat_of_another_machine_is_taken_over(tmp_path, monkeypatch):
    """A worker on another machine cannot be asked whether it lives: its heartbeat decides."""
    board = Board(open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "s", ["a", "b"], "h", stale_after=30)
    board.sync()
    mine = board.claim()
    other = board.claim()
    elsewhere = {"host": "another-machine", "boot": "x", "pid": 1, "start": 1}
    for trial in (mine, other):
        board.storage.set_trial_user_attr(trial._trial_id, claims.WORKER, elsewhere)
    board.storage.set_trial_user_attr(other._trial_id, claims.BEAT, time.time() - 31)
    status = board.sync()
    assert (status.running, status.waiting) == (1, 1)
    assert board.storage.get_trial(other._trial_id).state == TrialState.FAIL
    assert board.storage.get_trial(mine._trial_id).state == TrialState.RUNNING
    assert not board.beat(other._trial_id) and board.beat(mine._trial_id)  # the old owner learns it lost the cell
    assert not board.finish(other._trial_id, "completed", 0.5)


def test_lock_of_a_dead_holder_is_broken(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    board = Board(storage, "s", ["a"], "h")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = storage.create_new_study([claims.StudyDirection.MINIMIZE], "s:lock")
    who = {**claims.identity(), "pid": dead.pid, "start": None, "time": time.time()}
    storage.set_study_user_attr(lock, "holder", who)
    assert board.sync().waiting == 1  # the dead holder's lock was broken
    storage.create_new_study([claims.StudyDirection.MINIMIZE], "s:lock")  # a holder that never named itself
    monkeypatch.setattr(claims, "LOCK_STALE_S", 0.3)
    started = time.time()
    assert board.sync().waiting == 1
    assert 0.3 <= time.time() - started < 10


def test_identity_and_liveness():
    me = claims.identity()
    assert me["host"] == socket.gethostname() and me["pid"] == os.getpid()
    assert claims.alive(me) is True
    assert claims.alive({**me, "start": (me["start"] or 0) + 1}) is (me["start"] is None)  # a reused pid is not us
    assert claims.alive({**me, "host": "elsewhere"}) is None


def test_another_sweep_of_the_same_name_is_refused(tmp_path):
    from cnnlab.errors import CnnlabError

    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    Board(storage, "s", ["a"], "one")
    with pytest.raises(CnnlabError, match="different sweep named s"):
        Board(storage, "s", ["a"], "two")
