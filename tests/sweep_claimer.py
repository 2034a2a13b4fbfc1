"""A stand-in sweep worker for the claim tests: it claims cells through the real Board and "runs" each by
writing a line `<cell> <pid>` to a shared file, so the test can count how often each cell ran.

    python sweep_claimer.py URL STUDY CELLS OUT [--work SECONDS] [--hold]

--hold claims one cell and then sleeps (to be killed while holding it).
"""
import os
import sys
import time

from cnnlab.sweep.claims import Board
from cnnlab.sweep.storage import open_storage


def main() -> None:
    url, study, cells, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    work = float(sys.argv[sys.argv.index("--work") + 1]) if "--work" in sys.argv else 0.0
    board = Board(open_storage(url), study, [f"cell-{i:03d}" for i in range(cells)], "test-definition")
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
