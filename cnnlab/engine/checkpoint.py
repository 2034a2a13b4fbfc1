"""Checkpoints: written atomically, read with weights_only=True (never runs code from the file), and the
policy that decides which epoch's weights best.pt keeps."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnlab.atomic import save_torch
from cnnlab.errors import CnnlabError
from cnnlab.torchfile import read_weights_only


def save(path: Path, **state) -> None:
    save_torch(path, state)


def load(path: Path) -> dict:
    """A checkpoint's contents on the CPU (load_state_dict copies them to the model's device); a file that holds
    code, or is no torch file, is refused in one line."""
    return read_weights_only(path, "checkpoint")


@dataclass
class CheckpointPolicy:
    """best.pt holds the epoch with the best value of `monitor` so far: the highest ('max') or the lowest
    ('min'). It starts from the worst value there is, so the first finite value is kept; a tie keeps the
    earlier epoch and a NaN is never best. Its state travels in last.pt, so a resumed run goes on comparing
    with what it had kept."""

    monitor: str  # a metrics.jsonl key, e.g. val_acc or val_loss
    mode: str  # "max" or "min"
    best_value: float = field(init=False)
    best_epoch: int = field(init=False, default=0)  # 0: no epoch kept yet

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, not {self.mode}")
        self.best_value = -math.inf if self.mode == "max" else math.inf

    def update(self, row: dict) -> bool:
        """Whether the epoch of `row` is the new best (and is now remembered as such)."""
        value = row[self.monitor]
        better = value > self.best_value if self.mode == "max" else value < self.best_value
        if better:
            self.best_value, self.best_epoch = value, row["epoch"]
        return better

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        if (state["monitor"], state["mode"]) != (self.monitor, self.mode):
            raise CnnlabError(f"the checkpoint kept best.pt by {state['mode']} {state['monitor']}, but the run's config "
                              f"monitors {self.mode} {self.monitor}; resume with the config the run was started with")
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
