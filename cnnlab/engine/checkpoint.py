"""Checkpoints: written atomically, read weights-only (never runs code from the file), checked before a run
continues from one, and the policy that decides which epoch's weights best.pt keeps."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnlab.atomic import save_torch
from cnnlab.config import SHORT, flatten
from cnnlab.errors import CnnlabError
from cnnlab.torchfile import read_weights_only

LAST_KEYS = ("model", "optimizer", "state")  # what last.pt holds beyond best.pt's weights of one epoch
MAY_CHANGE = (
    "name",
    "device",
    "train.compile",
    "train.eval_batch_size",
    "train.log",
    "figures.",
)  # keys a resumed run may change


def save(path: Path, **state) -> None:
    save_torch(path, state)


def load(path: Path) -> dict:
    """A checkpoint's tensors on the CPU; a file that holds code, or is no torch file, is one CnnlabError."""
    return read_weights_only(path, "checkpoint")


def check_resumable(saved: dict, path: Path, config: dict) -> None:
    """Refuse to continue a run from `saved` (read from last.pt at `path`) when it is another kind of file (a best.pt)
    or was trained with another config than `config` (the run's config.yaml, as JSON) in a key that matters."""
    missing = [k for k in LAST_KEYS if k not in saved]
    if missing:
        kind = "a best.pt (one epoch's weights)" if "epoch" in saved and "model" in saved else "not a cnnlab last.pt"
        raise CnnlabError(
            f"{path} is {kind}: it lacks {', '.join(missing)}, which a run continues from; put back the "
            f"run's own last.pt, or start the run again with `cnnlab run`"
        )
    before, now = flatten(saved.get("config") or {}), flatten(config)
    changed = [k for k in before.keys() & now.keys() if before[k] != now[k] and not k.startswith(MAY_CHANGE)]
    changed += switched(before, now) + switched(now, before)
    if changed:
        shown = "; ".join(
            f"{k}: {_short(before, k)} in last.pt, {_short(now, k)} in config.yaml" for k in sorted(changed)
        )
        raise CnnlabError(
            f"the run's config.yaml differs from the config its checkpoint {path} was trained with ({shown}); "
            f"put back the values it was started with, or start a new run with `cnnlab run`"
        )


def switched(flat: dict, other: dict) -> list[str]:
    """Sections off (None) in `flat` but on in `other` (`optim.lookahead: null` against `optim.lookahead.k: 5`):
    keys the two flattened configs do not share, yet a change that alters training. A key one side lacks
    altogether (added to cnnlab after the run started) is no such change."""
    return [k for k, v in flat.items() if v is None and k not in other and any(o.startswith(k + ".") for o in other)]


def _short(flat: dict, key: str) -> str:
    """A config value as a message shows it: 'on' for a section switched on, a long value cut short."""
    if key in flat:
        return SHORT.repr(flat[key])
    return "on" if any(k.startswith(key + ".") for k in flat) else "absent"


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
            raise CnnlabError(
                f"the checkpoint kept best.pt by {state['mode']} {state['monitor']}, but the run's config "
                f"monitors {self.mode} {self.monitor}; resume with the config the run was started with"
            )
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
