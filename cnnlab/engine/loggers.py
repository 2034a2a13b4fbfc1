"""train.log: a run's epochs also where users of other tools look (Lightning's and Keras' loggers).

tensorboard: event files in the run folder itself, so `tensorboard --logdir runs` lists every run by its folder
and `--logdir SWEEP_DIR` shows a sweep's runs side by side; per epoch every number of the metrics row (val/acc,
train/loss, epoch/lr, ...), at the start the config as hyper-parameters and as text, at the end the report's
figures. A resumed run's log drops its scalars (TensorBoard's purge_step) and logs the epochs of its last
checkpoint again, so it reads as an uninterrupted run's whether the killed process had logged more or less.
csv: metrics.csv, metrics.jsonl's rows as a table, rewritten whole each epoch.
Only rank 0 of a spread run logs.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path
from typing import Optional

from cnnlab import config as config_mod
from cnnlab import metrics
from cnnlab.atomic import write_text
from cnnlab.errors import CnnlabError

CSV_NAME = "metrics.csv"


def check_loggers(cfg) -> None:
    """Refuse, before a run folder is made, a logger whose package is not installed."""
    if "tensorboard" in cfg.train.log and importlib.util.find_spec("tensorboard") is None:
        raise CnnlabError(
            "train.log tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]' "
            "(or leave tensorboard out of train.log)"
        )


def tag(key: str) -> str:
    """A metrics row's key as a TensorBoard tag grouped by split: val_acc -> val/acc; lr, train_seconds -> epoch/..."""
    split, _, name = key.partition("_")
    return f"{split}/{name}" if split in metrics.SPLITS and name in metrics.SPLIT_METRICS else f"epoch/{key}"


def hparam(value):
    """A config value as TensorBoard's hyper-parameters take it: numbers, text and booleans as they are."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class CsvLog:
    def __init__(self, run_path: Path):
        self.path = Path(run_path) / CSV_NAME

    def epoch(self, history: list[dict], new: list[dict]) -> None:
        columns = list(dict.fromkeys(key for row in history for key in row))  # a key's first appearance fixes its place
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path, text.getvalue())

    def figures(self, folder: Path) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLog:
    def __init__(self, run_path: Path, cfg, monitor: str, epochs_done: int):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(run_path), purge_step=1 if epochs_done else None)  # keeps step 0's config
        if epochs_done:
            return
        raw = cfg.model_dump(mode="json")
        for summary in hparams({k: hparam(v) for k, v in config_mod.flatten(raw).items()}, {tag(monitor): 0}):
            self.writer.file_writer.add_summary(summary)
        config_text = config_mod.dump(cfg)
        self.writer.add_text("config", "    " + config_text.replace("\n", "\n    "))  # a code block in Markdown

    def epoch(self, history: list[dict], new: list[dict]) -> None:
        for row in new:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(tag(key), value, row["epoch"])
        self.writer.flush()

    def figures(self, folder: Path) -> None:
        """The run's figures (PNG files the report drew) as images at the last epoch."""
        import numpy as np
        from PIL import Image

        for path in sorted(Path(folder).glob("*.png")):
            with Image.open(path) as image:
                self.writer.add_image(f"figures/{path.stem}", np.asarray(image.convert("RGB")), dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLogs:
    """The loggers train.log names, for one run folder, as one."""

    def __init__(self, loggers: list):
        self.loggers = loggers

    def epoch(self, history: list[dict], new: Optional[list[dict]] = None) -> None:
        """After an epoch: its row (`new`, default the last of `history`); on resume every row of last.pt's history."""
        for logger in self.loggers:
            logger.epoch(history, history[-1:] if new is None else new)

    def figures(self, folder: Path) -> None:
        for logger in self.loggers:
            logger.figures(folder)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_logs(cfg, run_path: Path, monitor: str, epochs_done: int) -> RunLogs:
    """The run's loggers, continuing after `epochs_done` epochs (0: a new run)."""
    made = {"csv": lambda: CsvLog(run_path), "tensorboard": lambda: TensorBoardLog(run_path, cfg, monitor, epochs_done)}
    return RunLogs([made[name]() for name in dict.fromkeys(cfg.train.log)])
