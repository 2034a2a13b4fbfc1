"""The process `cnnlab sweep` starts for each worker: `python -m cnnlab.sweep_process SWEEP_DIR ...`, with the
storage URL in $CNNLAB_SWEEP_STORAGE. It hands the sweep's worker loop (cnnlab.sweep.worker) the runner's
start and resume, which train a cell's run and finish it; sweep/ sits below the runner and cannot import it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from cnnlab.errors import CnnlabError
from cnnlab.sweep.worker import STORAGE_ENV, CellRunner, Worker


def cell_runner(data_root: Path) -> CellRunner:
    from cnnlab.runner import resume_run, start_run

    return CellRunner(
        start=lambda cfg, run_dir, progress: start_run(cfg, run_dir.parent, data_root, progress, run_dir=run_dir),
        resume=lambda run_dir, progress: resume_run(run_dir, data_root, progress),
    )


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.sweep_process", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="the sweep folder (with sweep.json)")
    parser.add_argument("--index", type=int, default=1, help="this worker's number, shown in its messages")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--stale-after", type=float, default=None)
    args = parser.parse_args(argv)
    url = os.environ.get(STORAGE_ENV)
    if not url:
        sys.exit(f"error: set {STORAGE_ENV} to the sweep's storage URL")

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    import torch

    from cnnlab.data.root import data_root
    from cnnlab.sweep.claims import STALE_AFTER_S

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        worker = Worker(
            args.folder, url, args.index, cell_runner(data_root(args.data_dir)), args.stale_after or STALE_AFTER_S
        )
        worker.loop()
    except CnnlabError as e:
        print(f"[worker {args.index}] error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"[worker {args.index}] interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
