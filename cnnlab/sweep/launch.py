"""`cnnlab sweep`: set up the sweep folder and its study, start worker processes on this machine, wait for
them, and end with the sweep report. Running the same command again continues the same sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from cnnlab.device import cores
from cnnlab.errors import CnnlabError, Stopped
from cnnlab.sweep.claims import STALE_AFTER_S
from cnnlab.sweep.grid import DEFINITION, SweepDef
from cnnlab.sweep.storage import open_storage, redact
from cnnlab.sweep.worker import STORAGE_ENV, board_for, params_of

STOP_GRACE_S = 10.0  # after Ctrl-C, how long workers get to stop at a safe point before SIGINT is passed on
WORKER_MODULE = (
    "cnnlab.sweep_process"  # the worker process's entry point (a top module: it hands the worker the runner)
)


def default_storage(folder: Path) -> str:
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def prepare_folder(definition: SweepDef, sweeps_dir: Path) -> tuple[Path, SweepDef]:
    """The sweep's folder and its definition: the one in its sweep.json, which must be this sweep, or for a new
    folder this one (its sweep.json is written once the storage holds the sweep: see bind)."""
    folder = Path(sweeps_dir) / definition.name
    if (folder / DEFINITION).exists():
        existing = SweepDef.read(folder)
        if existing.hash != definition.hash:
            raise CnnlabError(
                f"{folder} holds another sweep (a different grid, seeds or config); "
                f"give this one another --name or --sweeps-dir"
            )
        return folder, existing
    folder.mkdir(parents=True, exist_ok=True)
    return folder, definition


def bind(definition: SweepDef, folder: Path, url: str, stale_after: float):
    """The sweep's board in the storage at `url`; a folder that has no identity yet (new, or from an older
    cnnlab) records the study's in its sweep.json."""
    board = board_for(definition, open_storage(url), stale_after)
    if definition.identity != board.sweep_id:
        definition.identity, definition.storage = board.sweep_id, redact(url)
        definition.write(folder)
    return board


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code} ({signal.Signals(-code).name})"
    return {2: "stopped by an error (shown above)", 130: "interrupted", 143: "stopped by SIGTERM"}.get(
        code, f"exited with code {code}"
    )


def start_workers(folder: Path, url: str, count: int, threads: int, data_root: Path, stale_after: float) -> list:
    env = dict(os.environ, **{STORAGE_ENV: url, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    procs = []
    for i in range(1, count + 1):
        cmd = [
            sys.executable,
            "-m",
            WORKER_MODULE,
            str(folder),
            "--index",
            str(i),
            "--threads",
            str(threads),
            "--data-dir",
            str(data_root),
            "--stale-after",
            str(stale_after),
        ]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def _wait_all(procs: list, seconds: float) -> bool:
    """Whether every worker ended within `seconds`."""
    deadline = time.time() + seconds
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            return False
    return True


def wait_for(procs: list) -> list[tuple[int, int]]:
    """Wait for every worker. On Ctrl-C each marks its cell interrupted and its run stopped: a Ctrl-C typed in the
    terminal reaches the workers too, and they stop at their next safe point; a worker still running after
    STOP_GRACE_S (the signal came to this process alone) is sent SIGINT, and killed after a minute more. SIGTERM
    (a batch scheduler, `docker stop`) reaches this process alone: it is passed on to the workers, which stop the
    same way, and the sweep ends with exit code 143."""
    signals: list[int] = []

    def pass_on(signum, frame):
        signals.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers belong to it alone
    previous = signal.signal(signal.SIGTERM, pass_on) if main_thread else None
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.3)
    except KeyboardInterrupt:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the workers' stop short
        if not _wait_all(procs, STOP_GRACE_S):
            for p in procs:
                if p.poll() is None and os.name == "nt":
                    p.terminate()  # Windows' Popen sends no SIGINT
                elif p.poll() is None:
                    p.send_signal(signal.SIGINT)
            if not _wait_all(procs, 60):
                for p in procs:
                    p.kill()
        how = "stopped by SIGTERM" if signals else "interrupted"
        raise Stopped(
            f"the sweep was {how}; run the same command again to continue: finished runs are kept, "
            "a stopped run resumes from its last epoch",
            exit_code=143 if signals else 130,
        ) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return [(i, p.returncode) for i, p in enumerate(procs, 1)]


def run_sweep(
    definition: SweepDef,
    sweeps_dir: Path,
    storage_url: Optional[str],
    workers: int,
    data_root: Path,
    stale_after: float = STALE_AFTER_S,
    say: Callable[[str], None] = print,
    threads: Optional[int] = None,
) -> Path:
    """Run every missing cell of the sweep with `workers` local processes of `threads` torch threads each
    (default: the cores shared out between them); the sweep folder when all are done."""
    if workers < 1 or (threads is not None and threads < 1):
        raise CnnlabError(f"--workers and --threads must be at least 1 (got {workers} and {threads})")
    folder, definition = prepare_folder(definition, sweeps_dir)
    url = storage_url or default_storage(folder)
    board = bind(definition, folder, url, stale_after)
    status = board.sync(params_of)
    todo = status.cells - status.done
    count = min(workers, todo)
    threads = threads or max(1, cores() // max(1, count))
    what = f"{len(definition.cells)} runs" if definition.mode == "grid" else f"{len(definition.cells)} Optuna trials"
    say(
        f"sweep {definition.name}: {what}, {status.done} done, {todo} to run"
        + (
            f" by {count} worker{'s' if count > 1 else ''} with {threads} thread{'s' if threads > 1 else ''} each"
            if todo
            else ""
        )
        + f"; storage {redact(url)}"
    )
    if todo:
        started = time.perf_counter()
        exits = wait_for(start_workers(folder, url, count, threads, data_root, stale_after))
        status = board.status()
        if not status.all_done:
            died = "; ".join(f"worker {i} {_describe_exit(code)}" for i, code in exits if code != 0)
            raise CnnlabError(
                f"{status.cells - status.done} of {status.cells} cells are not finished"
                + (f" ({died})" if died else "")
                + ". Run the same command again to continue: finished runs are kept, a half-finished "
                "run resumes from its last epoch."
            )
        say(f"sweep {definition.name}: all {status.cells} done in {time.perf_counter() - started:.1f} s")
    return folder
