"""The run folder: the unit every other part reads (reports, plots, comparisons, resume).

    runs/<experiment>/<run-id>/
        config.yaml        the fully resolved config
        metrics.jsonl      one JSON object per epoch
        summary.json       status, best epoch, final metrics, initial-loss check, ...
        architecture.json  the per-layer table of the model
        checkpoints/best.pt, checkpoints/last.pt
        figures/*.png, report.html, report.md
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from cnnlab import config as config_mod
from cnnlab.atomic import write_json, write_jsonl, write_text
from cnnlab.errors import CnnlabError
from cnnlab.metrics import TIMING_KEYS  # noqa: F401  readers drop these metrics.jsonl keys to compare two runs


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
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.path / "checkpoints" / "best.pt")
    last_path = property(lambda self: self.path / "checkpoints" / "last.pt")
    figures = property(lambda self: self.path / "figures")

    def config(self):
        return config_mod.validate(config_mod.read_yaml(self.config_path), str(self.config_path))

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_metrics(self, rows: list[dict]) -> None:
        write_jsonl(self.metrics_path, rows)

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def architecture(self) -> list[dict]:
        return json.loads(self.architecture_path.read_text()) if self.architecture_path.exists() else []

    def write_architecture(self, rows: list[dict]) -> None:
        write_json(self.architecture_path, rows)
