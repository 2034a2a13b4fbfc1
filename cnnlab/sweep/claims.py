"""Claims: which worker runs which cell, kept in the study's storage so that workers in several processes or
on several machines never run one cell twice, and a cell whose worker died goes to another worker.

Each cell is an Optuna trial whose user attribute `cell` names it. Protocol:
- Enqueue: a cell with no waiting, running or finished-for-good trial gets a new WAITING trial. Only the holder
  of the sweep's lock enqueues, so no cell ever has two waiting trials (the lock is a study named
  `<sweep>:lock`: creating a study is atomic in every Optuna storage, a second creator gets
  DuplicatedStudyError; releasing deletes it by id, so breaking a dead holder's lock cannot delete a newer one).
- Claim: a worker moves a WAITING trial to RUNNING; the storage lets exactly one worker do that
  (a row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite: see storage.py).
- Liveness: the owner records who it is (host, boot, pid, process start time) and a heartbeat every few
  seconds. A RUNNING trial is stale when its owner is on this machine and no longer alive, or its heartbeat is
  older than the grace period (owners on other machines). The lock holder marks stale trials FAIL (outcome
  `stale`) and enqueues the cell again; the next worker resumes the half-finished run folder.
- Finish: COMPLETE (value: the objective), PRUNED, or FAIL with an outcome: `run-failed` (the run itself
  failed, e.g. a NaN loss: done, not retried), `error` or `interrupted` (retried by a later sweep command).
- Identity: the study holds the sweep's identity (a random id, also in the sweep folder's sweep.json). A worker
  whose storage holds no study of that name, or one of another identity, is refused before it claims a cell,
  so a mistyped --storage cannot run (and rewrite) the sweep's run folders a second time.

Why not Optuna's own heartbeat (RDBStorage(heartbeat_interval, grace_period), fail_stale_trials,
RetryHeartbeatStaleTrialCallback, checked on Optuna 5.0): it decides by heartbeat age alone, so a worker
killed on this machine holds its cell for the whole grace period instead of being seen dead at once; a trial
that never wrote a heartbeat (its worker died between claim and first beat) is never stale, so its cell
would never finish; a heartbeat on a trial already failed as stale is accepted silently, so the old owner
never learns it lost the cell; the retry callback copies the dead worker's user attributes into the new
trial and, outside our lock, can race with our enqueueing into two waiting trials for one cell; and
JournalStorage has no heartbeat at all. What it does better: it compares heartbeats with the database's
clock, while ours come from each worker's clock, so machines sharing a sweep need clocks within
--stale-after (120 s) of each other.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import CnnlabError

CELL, OUTCOME, WORKER, BEAT = "cell", "outcome", "worker", "heartbeat"
DEFINITION = "cnnlab:sweep"  # study attribute: the hash of the sweep definition
SWEEP_ID = "cnnlab:sweep-id"  # study attribute: the sweep's identity, also in its folder's sweep.json
HEARTBEAT_S = 5.0  # seconds between heartbeats of a running cell
STALE_AFTER_S = 120.0  # a running cell whose heartbeat is this old is taken to be dead (owners on other machines)
LOCK_STALE_S = 60.0  # the sweep lock is held for a moment; a holder this old (or dead) has its lock broken
DONE_OUTCOMES = ("completed", "run-failed", "pruned")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> Optional[tuple[str, int]]:
    """(state letter, start time in clock ticks) of a process from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def identity() -> dict:
    """Who this process is, so that a worker on the same machine can tell whether it is still alive."""
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "start": stat[1] if stat else None}


def alive(who: Optional[dict]) -> Optional[bool]:
    """Is the process `who` alive? None when it ran on another machine (or before a reboot): then only its
    heartbeat can tell. A zombie counts as dead; so does a new process that reuses the pid."""
    if not who or who.get("host") != socket.gethostname() or who.get("boot") != _boot_id():
        return None
    if os.name == "nt":  # os.kill(pid, 0) would send it CTRL_C_EVENT there
        return None
    if not os.path.isdir("/proc"):
        try:
            os.kill(who["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    stat = _proc_stat(who["pid"])
    return stat is not None and stat[0] != "Z" and (who.get("start") is None or stat[1] == who["start"])


def is_done(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and trial.user_attrs.get(OUTCOME) in DONE_OUTCOMES
    )


@dataclass
class Status:
    cells: int
    done: int
    running: int
    waiting: int

    @property
    def all_done(self) -> bool:
        return self.done == self.cells


class Board:
    """The sweep's cells as trials in one study; what workers use to enqueue, claim, beat and finish."""

    def __init__(
        self,
        storage,
        name: str,
        cells: list[str],
        definition_hash: str,
        direction: str = "maximize",
        stale_after: float = STALE_AFTER_S,
        sweep_id: Optional[str] = None,
    ):
        """`sweep_id`: the identity recorded in the sweep's folder, which the study must hold (a worker given
        another storage is refused here, before it claims anything); None while a sweep folder is being set up:
        the study is created, or found (a second machine's folder), and its identity is `self.sweep_id`."""
        self.storage, self.name, self.cells, self.stale_after = storage, name, list(cells), stale_after
        self.me = identity()
        try:
            self.study_id = storage.get_study_id_from_name(name)
        except KeyError:
            if sweep_id is not None:
                raise CnnlabError(
                    f"the storage holds no sweep named {name}, but the sweep folder has run it there "
                    f"(sweep {sweep_id}); give the --storage the sweep was started with"
                ) from None
            try:
                self.study_id = storage.create_new_study([StudyDirection[direction.upper()]], name)
            except DuplicatedStudyError:
                self.study_id = storage.get_study_id_from_name(name)
        held = storage.get_study_user_attrs(self.study_id).get(DEFINITION)
        if held is None:
            storage.set_study_user_attr(self.study_id, DEFINITION, definition_hash)
        elif held != definition_hash:
            raise CnnlabError(
                f"the storage already holds a different sweep named {name} (another grid, seeds or config); "
                f"give this one another --name, or use another --storage"
            )
        self.sweep_id = self._bind(sweep_id)

    def _bind(self, sweep_id: Optional[str]) -> str:
        """The sweep's identity in the study: given it to a study that has none yet (under the lock, so that two
        machines setting up at once agree), else checked against `sweep_id`."""
        with self.locked():
            held = self.storage.get_study_user_attrs(self.study_id).get(SWEEP_ID)
            if held is None and sweep_id is None:
                held = uuid.uuid4().hex
                self.storage.set_study_user_attr(self.study_id, SWEEP_ID, held)
        if sweep_id is not None and held != sweep_id:
            raise CnnlabError(
                f"the storage holds another sweep named {self.name} (sweep {held}, not this folder's "
                f"{sweep_id}); give the --storage this sweep was started with"
            )
        return held

    # ---- reading -------------------------------------------------------------------------------------

    def trials(self, states: Optional[tuple] = None) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    def status(self, trials: Optional[list[FrozenTrial]] = None) -> Status:
        trials = self.trials() if trials is None else trials
        by_cell: dict[str, list[FrozenTrial]] = {}
        for t in trials:
            by_cell.setdefault(t.user_attrs.get(CELL), []).append(t)
        done = sum(any(is_done(t) for t in by_cell.get(c, [])) for c in self.cells)

        def count(state) -> int:
            return sum(t.state == state for t in trials if t.user_attrs.get(CELL) in self.cells)

        return Status(len(self.cells), done, count(TrialState.RUNNING), count(TrialState.WAITING))

    # ---- the lock and what is done under it ----------------------------------------------------------

    @contextmanager
    def locked(self):
        lock_name, first_seen = f"{self.name}:lock", {}
        while True:
            try:
                lock_id = self.storage.create_new_study([StudyDirection.MINIMIZE], lock_name)
                break
            except DuplicatedStudyError:
                self._break_dead_lock(lock_name, first_seen)
                time.sleep(0.05 + random.random() * 0.15)
        try:
            self.storage.set_study_user_attr(lock_id, "holder", {**self.me, "time": time.time()})
            yield
        finally:
            try:
                self.storage.delete_study(lock_id)
            except KeyError:
                pass  # broken by another worker after we held it too long; nothing to release

    def _break_dead_lock(self, lock_name: str, first_seen: dict) -> None:
        try:
            lock_id = self.storage.get_study_id_from_name(lock_name)
            holder = self.storage.get_study_user_attrs(lock_id).get("holder")
        except KeyError:
            return
        now = time.time()
        if holder is not None:
            dead = alive(holder) is False or now - holder["time"] > LOCK_STALE_S
        else:  # the holder died between creating the lock and naming itself
            dead = now - first_seen.setdefault(lock_id, now) > LOCK_STALE_S
        if dead:
            try:
                self.storage.delete_study(lock_id)
            except KeyError:
                pass

    def stale(self, trial: FrozenTrial, now: float) -> bool:
        if alive(trial.user_attrs.get(WORKER)) is False:
            return True
        beat = trial.user_attrs.get(BEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else now)
        return now - beat > self.stale_after

    def sync(self, params_of=None) -> Status:
        """Under the lock: fail stale trials, then enqueue every cell that has no live or finished trial.
        `params_of(cell, failed_trials)` gives the fixed parameters of a re-enqueued cell (Optuna trials keep
        the values they were sampled with, so that their run folder resumes with the same config)."""
        with self.locked():
            now = time.time()
            for trial in self.trials((TrialState.RUNNING,)):
                if self.stale(trial, now):
                    self._set_outcome_and_state(trial._trial_id, "stale", TrialState.FAIL)
            trials = self.trials()
            by_cell: dict[str, list[FrozenTrial]] = {}
            for t in trials:
                by_cell.setdefault(t.user_attrs.get(CELL), []).append(t)
            for cell in self.cells:
                mine = by_cell.get(cell, [])
                if any(is_done(t) or t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mine):
                    continue
                params = params_of(cell, mine) if params_of else {}
                template = optuna.trial.create_trial(
                    state=TrialState.WAITING, user_attrs={CELL: cell}, system_attrs={"fixed_params": params}
                )
                self.storage.create_new_trial(self.study_id, template_trial=template)
            return self.status()

    # ---- one worker's cell ---------------------------------------------------------------------------

    def claim(self) -> Optional[FrozenTrial]:
        """Take the first waiting cell in the sweep's order (a re-enqueued cell before later ones), or None."""
        order = {cell: i for i, cell in enumerate(self.cells)}
        waiting = self.trials((TrialState.WAITING,))
        for trial in sorted(waiting, key=lambda t: (order.get(t.user_attrs.get(CELL), len(order)), t.number)):
            try:
                if not self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    continue  # another worker took it first
            except UpdateFinishedTrialError:
                continue
            self.storage.set_trial_user_attr(trial._trial_id, WORKER, self.me)
            self.storage.set_trial_user_attr(trial._trial_id, BEAT, time.time())
            return self.storage.get_trial(trial._trial_id)
        return None

    def beat(self, trial_id: int) -> bool:
        """Record a heartbeat; False if the trial is no longer ours (failed as stale by another worker)."""
        try:
            self.storage.set_trial_user_attr(trial_id, BEAT, time.time())
        except UpdateFinishedTrialError:
            return False
        return self.storage.get_trial(trial_id).state == TrialState.RUNNING

    def finish(self, trial_id: int, outcome: str, value: Optional[float] = None) -> bool:
        """End our trial with an outcome; False if it had already been failed as stale."""
        state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome, TrialState.FAIL)
        if state == TrialState.COMPLETE and value is None:
            state, outcome = TrialState.FAIL, "run-failed"
        return self._set_outcome_and_state(trial_id, outcome, state, value)

    def _set_outcome_and_state(
        self, trial_id: int, outcome: str, state: TrialState, value: Optional[float] = None
    ) -> bool:
        try:
            self.storage.set_trial_user_attr(trial_id, OUTCOME, outcome)
            values = [value] if value is not None and state != TrialState.FAIL else None
            self.storage.set_trial_state_values(trial_id, state, values)
        except UpdateFinishedTrialError:
            return False
        return True


class Heartbeat:
    """A thread that beats for one running trial; `lost` turns true if the trial was taken from us."""

    def __init__(self, board: Board, trial_id: int, every: float = HEARTBEAT_S):
        self.board, self.trial_id, self.every = board, trial_id, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.board.beat(self.trial_id):
                    self.lost = True
                    return
            except Exception:  # a storage hiccup: try again at the next beat; staleness needs many missed beats
                continue

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
