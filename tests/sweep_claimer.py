"""A stand-in sweep worker for the claim tests: it claims cells through the real Board and "runs" each by
writing a line `<cell> <pid>` to a shared file, so the test can count how often each cell ran.

    python sweep_claimer.py URL STUDY CELLS OUT [--work SECONDS] [--hold] [--barrier N]

--hold claims one cell and then sleeps (to be killed while holding it). --barrier N: claim only once N claimers
are ready (each leaves OUT.ready.<pid>), so that they start together and really race.
"""

import os
import sys
import time

from cnnlab.sweep.claims import Board
from cnnlab.sweep.storage import open_storage


def wait_for_others(out: str, count: int) -> None:
    """Say this claimer is ready, then wait (at most a minute) until `count` claimers are."""
    folder, stem = os.path.split(os.path.abspath(out))
    open(f"{out}.ready.{os.getpid()}", "w").close()
    deadline = time.time() + 60
    while sum(name.startswith(f"{stem}.ready.") for name in os.listdir(folder)) < count and time.time() < deadline:
        time.sleep(0.01)


def main() -> None:
    url, study, cells, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    work = float(sys.argv[sys.argv.index("--work") + 1]) if "--work" in sys.argv else 0.0
    board = Board(open_storage(url), study, [f"cell-{i:03d}" for i in range(cells)], "test-definition")
    if "--barrier" in sys.argv:
        wait_for_others(out, int(sys.argv[sys.argv.index("--barrier") + 1]))
    while True:
        trial = board.claim()
        if trial is None:
            status = board.sync()
            if status.all_done:
                return
            if not status.waiting:
                time.sleep(0.05)
            continue
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"{trial.user_attrs['cell']} {os.getpid()}\n".encode())
        os.close(fd)
        if "--hold" in sys.argv:
            time.sleep(600)
        time.sleep(work)
        board.finish(trial._trial_id, "completed", 1.0)


if __name__ == "__main__":
    main()
