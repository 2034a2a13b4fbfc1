"""The run folder: the unit every other part reads (reports, plots, comparisons, resume).

runs/<experiment>/<run-id>/
    config.yaml        the fully resolved config
    metrics.jsonl      one JSON object per epoch
    summary.json       status, best epoch, final metrics, initial-loss check, ...
    architecture.json  the per-layer table of the model
    model_source.json, model_source.py   the user's own module (file.py:Name): its path, sha256 and a copy
    checkpoints/best.pt, checkpoints/last.pt
    figures/*.png, report.html, report.md
    error.log          the traceback of an error that failed the run (only then)
    .lock              locked (flock; on Windows msvcrt) by the one process training the run; its PID inside
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from cnnlab import config as config_mod
from cnnlab.atomic import remove_leftovers, write_json, write_jsonl, write_text
from cnnlab.errors import CnnlabError
from cnnlab.models.user import is_user_model, source_record
from cnnlab.records import RecordError, RunSummary, check_epoch_rows

SOURCE_COPY = "model_source.py"
LOCKED_BYTE = 2**20  # msvcrt locks a byte range, which no one can read then: one far past the holder's text


def lock_file(fd: int) -> bool:
    """Take the OS's exclusive lock on the open file `fd` without waiting; False if another process holds it.
    POSIX: flock. Windows (no fcntl): msvcrt.locking of one byte past the text, so the holder stays readable."""
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class DamagedRecord(CnnlabError):
    """summary.json or metrics.jsonl of the run folder `run` cannot be read; resuming the run writes it again."""

    def __init__(self, run: Path, path: Path, what: str):
        super().__init__(f"{path} is damaged ({what}); `cnnlab resume {run}` writes it again from checkpoints/last.pt")
        self.path, self.what = path, what


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, runs_dir: Path, cfg) -> "RunFolder":
        """A new folder `runs_dir/<name>/<date-time>-s<seed>` (a suffix keeps names unique)."""
        parent = Path(runs_dir) / cfg.name
        parent.mkdir(parents=True, exist_ok=True)
        stem = time.strftime("%Y%m%d-%H%M%S") + f"-s{cfg.seed}"
        for i in range(1000):
            path = parent / (stem if i == 0 else f"{stem}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        return cls._fill(path, cfg)

    @classmethod
    def create_at(cls, path: Path, cfg) -> "RunFolder":
        """A new run folder at a chosen path (a sweep names each cell's folder); the path must not exist yet."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise CnnlabError(f"run folder {path} already exists; resume it or remove it") from None
        return cls._fill(path, cfg)

    @classmethod
    def _fill(cls, path: Path, cfg) -> "RunFolder":
        run = cls(path)
        run.checkpoints.mkdir()
        write_text(run.config_path, config_mod.dump(cfg))
        if is_user_model(cfg.model.name):
            record = source_record(cfg.model.name)
            write_text(run.path / SOURCE_COPY, record.text)
            write_json(run.model_source_path, {**record.as_dict(), "copy": SOURCE_COPY})
        return run

    @classmethod
    def open(cls, path) -> "RunFolder":
        run = cls(Path(path))
        if not run.config_path.is_file():
            raise CnnlabError(f"{path} is not a run folder (no config.yaml); give a folder made by `cnnlab run`")
        return run

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    architecture_path = property(lambda self: self.path / "architecture.json")
    model_source_path = property(lambda self: self.path / "model_source.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.path / "checkpoints" / "best.pt")
    last_path = property(lambda self: self.path / "checkpoints" / "last.pt")
    figures = property(lambda self: self.path / "figures")

    lock_path = property(lambda self: self.path / ".lock")
    error_log = property(lambda self: self.path / "error.log")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock while training it, so that no second process trains it at the same time. It is
        an OS lock (flock; msvcrt's on Windows): it ends with the process, also after kill -9, so a dead holder
        never blocks a resume. Temporary files that a killed writer left are removed once the lock is held."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        if not lock_file(fd):
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CnnlabError(
                f"{self.path} is being trained by {holder} (it holds {self.lock_path.name}); wait for "
                f"that process to end, or stop it, before resuming this run"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
            remove_leftovers(self.path)
            yield
        finally:
            os.close(fd)  # releases the lock

    def config(self):
        return config_mod.validate(config_mod.read_yaml(self.config_path), str(self.config_path))

    def check_model_source(self, cfg) -> None:
        """A run of the user's own module imports the same path again: refused when its source has changed since
        the run began (the weights would not be the ones that module trained)."""
        if not is_user_model(cfg.model.name):
            return
        recorded = json.loads(self.model_source_path.read_text()) if self.model_source_path.exists() else {}
        now = source_record(cfg.model.name)
        if recorded.get("sha256") != now.sha256:
            raise CnnlabError(
                f"{now.path or cfg.model.name} has changed since run {self.path} began (its source "
                f"then is {self.path / SOURCE_COPY}); put that copy back to use this run, or start a "
                f"new one"
            )

    def metrics(self) -> list[dict]:
        """metrics.jsonl's rows, each checked (numbers, an integer epoch)."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for number, line in enumerate(self.metrics_path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise DamagedRecord(self.path, self.metrics_path, f"line {number} is not JSON: {e}") from None
        try:
            return check_epoch_rows(rows, self.metrics_path)
        except RecordError as e:
            raise DamagedRecord(self.path, self.metrics_path, e.what) from None

    def write_metrics(self, rows: list[dict]) -> None:
        write_jsonl(self.metrics_path, rows)

    def summary(self) -> Optional[RunSummary]:
        """summary.json as a checked record; None before the run wrote one."""
        if not self.summary_path.exists():
            return None
        try:
            return RunSummary.read(self.summary_path)
        except RecordError as e:
            raise DamagedRecord(self.path, self.summary_path, e.what) from None

    def write_summary(self, summary: RunSummary) -> None:
        summary.write(self.summary_path)

    def architecture(self) -> list[dict]:
        return json.loads(self.architecture_path.read_text()) if self.architecture_path.exists() else []

    def write_architecture(self, rows: list[dict]) -> None:
        write_json(self.architecture_path, rows)
