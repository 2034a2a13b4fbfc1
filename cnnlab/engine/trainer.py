"""The training loop: a built run in, epochs into its run folder out. Nothing between you and the tensors.

Each epoch trains, evaluates validation and test (every train.eval_every epochs and after the last; with a
weight average, the average is evaluated), appends one metrics row, lets the checkpoint policy keep `best.pt`
and writes `last.pt`. Every random draw of epoch e comes from seeds derived from (seed, e), so a resumed run
repeats exactly what an uninterrupted run would have done. How a run ends (completed, failed, stopped, pruned)
is recorded by cnnlab.runner, not here.
"""
from __future__ import annotations

import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from cnnlab import metrics
from cnnlab.atomic import write_json
from cnnlab.engine import checkpoint
from cnnlab.engine.average import weight_average
from cnnlab.engine.build import BuiltRun
from cnnlab.engine.checkpoint import CheckpointPolicy
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.optim import l1_penalty, lr_at
from cnnlab.engine.startup import needs_warm_up, warm_up
from cnnlab.engine.summary import initial_loss_ok, run_summary
from cnnlab.optimizers import full_rate
from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder

NAN_CHECK_EVERY = 20  # steps between finiteness checks (each one is a device sync)


class Pruned(Exception):
    """Raised by a Progress hook to end a run early on purpose (a sweep's pruner): the run ends as pruned."""


@dataclass
class Progress:
    """Hooks for showing progress; the CLI fills them, tests leave them empty."""

    epoch_start: Callable[[int, int], None] = lambda epoch, batches: None
    step: Callable[[], None] = lambda: None
    epoch_end: Callable[[dict], None] = lambda row: None
    message: Callable[[str], None] = lambda text: None


@dataclass
class RunState:
    """What last.pt carries besides the weights and the checkpoint policy: enough to continue as if never stopped."""

    epoch: int = 0
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0
    initial_loss: Optional[float] = None
    startup_seconds: Optional[float] = None  # from the clock's origin (cnnlab.engine.startup) to the first step


def seed_for(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated by torch this epoch. CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split_state(saved: dict, policy: CheckpointPolicy) -> tuple[RunState, dict]:
    """(run state, policy state) from last.pt's `state`; files written before the policy had its own state
    hold best_epoch and best_value there, of the task's metric (a maximum)."""
    saved = dict(saved)
    legacy = {"monitor": policy.monitor, "mode": "max", "best_value": saved.pop("best_value", None),
              "best_epoch": saved.pop("best_epoch", None)}
    return RunState(**saved), legacy


class Trainer:
    """Runs the epochs of one built run into its run folder, continuing from last.pt when there is one."""

    def __init__(self, built: BuiltRun, progress: Progress = Progress()):
        self.built, self.progress = built, progress
        self.run: Optional[RunFolder] = None
        self.state = RunState()
        self.policy = CheckpointPolicy(built.monitor, metrics.mode(built.monitor))
        self.steps_per_epoch = len(built.data.train)
        self.total_steps = self.steps_per_epoch * built.cfg.train.epochs
        self.average = weight_average(built.model, built.cfg, self.total_steps)

    def attach(self, run: RunFolder) -> None:
        """Train into `run` from its last checkpoint (if any); metrics.jsonl is rewritten from last.pt's history."""
        self.run = run
        if run.last_path.exists():
            ck = checkpoint.load(run.last_path, self.built.device)
            self.built.model.load_state_dict(ck["model"])
            self.built.optimizer.load_state_dict(ck["optimizer"])
            self.state, legacy = split_state(ck["state"], self.policy)
            self.policy.load_state_dict(ck.get("policy", legacy))
            if self.average is not None:
                self.average.load_state_dict(ck["average"])
        run.write_metrics(self.state.history)

    def save_last(self) -> None:
        checkpoint.save(self.run.last_path, model=self.built.model.state_dict(), optimizer=self.built.optimizer.state_dict(),
                        state=self.state.__dict__, policy=self.policy.state_dict(),
                        average=None if self.average is None else self.average.state_dict(),
                        config=self.built.cfg.model_dump(mode="json"), classes=self.built.data.classes)

    def summary(self, status: str, error: Optional[str] = None) -> dict:
        return run_summary(self.built, self.state, self.policy, status, error)

    # ---- the loop ------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> Optional[dict]:
        """One pass over the training split; None if the loss stopped being finite."""
        b, cfg = self.built, self.built.cfg
        torch.manual_seed(seed_for(cfg.seed, epoch))  # dropout and any other global draws
        gen = torch.Generator().manual_seed(seed_for(cfg.seed, epoch))  # order and augmentation
        self.set_whitening_bias(epoch)
        b.model.train()
        tally = b.task.new_tally(b.device)
        bad = torch.zeros((), dtype=torch.bool, device=b.device)
        l1, rate = cfg.optim.l1, full_rate(cfg.optim, cfg.train.batch_size)
        step = (epoch - 1) * self.steps_per_epoch
        self.progress.epoch_start(epoch, self.steps_per_epoch)
        for i, (x, y) in enumerate(b.data.train.batches(gen, epoch)):
            if self.state.startup_seconds is None and b.started_at is not None:
                self.state.startup_seconds = round(time.time() - b.started_at, 3)
            lr = lr_at(step + i, self.total_steps, self.steps_per_epoch, rate, cfg.schedule)
            for group in b.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            with b.autocast():
                out = b.forward(x)
                loss = b.task.loss(out, y)
            total = loss + l1 * l1_penalty(b.model) if l1 else loss
            b.optimizer.zero_grad(set_to_none=True)
            total.backward()
            bad |= ~torch.isfinite(total.detach())
            if (i + 1) % NAN_CHECK_EVERY == 0 and bad.item():
                return None
            b.optimizer.step()
            if self.average is not None:
                self.average.update(b.model, step + i + 1)
            b.task.update(tally, out.detach(), y, loss)
            self.progress.step()
        if bad.item():
            return None
        return {**b.task.result(tally), "lr": lr}

    def set_whitening_bias(self, epoch: int) -> None:
        """model.whiten_bias_epochs: the whitening layer's bias trains in the first N epochs only."""
        conv, epochs = self.built.whitened, self.built.cfg.model.whiten_bias_epochs
        if conv is not None and conv.bias is not None and epochs is not None:
            conv.bias.requires_grad_(epoch <= epochs)

    def begin(self) -> None:
        """What a run folder holds before the first epoch: the architecture, the palette, the loss before training."""
        b = self.built
        self.run.write_architecture(b.architecture)
        if b.data.palette is not None:
            write_json(self.run.path / "palette.json", {"colour_class": b.cfg.data.colour_class,
                                                        "rgb": b.data.palette.round(decimals=2).tolist()})
        if needs_warm_up(b):
            warm_up(b)
        if self.state.initial_loss is None:
            torch.manual_seed(b.cfg.seed)
            self.state.initial_loss = evaluate(b, b.data.val)["loss"]
            expected = b.task.expected_initial_loss
            if not initial_loss_ok(self.state.initial_loss, expected):
                self.progress.message(f"warning: loss before training is {self.state.initial_loss:.3f}, far from "
                                      f"ln({b.task.num_classes}) = {expected:.3f}; check the initialisation and the output layer")
        self.run.write_summary(self.summary("running"))

    def fit(self) -> None:
        """Train the remaining epochs. A CnnlabError says the loss stopped being finite (the last good epoch
        stays on disk); whatever a progress hook raises (Pruned, KeyboardInterrupt) passes through."""
        self.begin()
        for epoch in range(self.state.epoch + 1, self.built.cfg.train.epochs + 1):
            self.run_epoch(epoch)
        if self.average is not None:
            self.average.copy_to(self.built.model)  # what was evaluated is what the run ends with

    def run_epoch(self, epoch: int) -> None:
        b = self.built
        started = time.perf_counter()
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        train = self.train_epoch(epoch)
        if train is None:
            self.state.wall_seconds += time.perf_counter() - started
            raise CnnlabError(f"the training loss became NaN or infinite in epoch {epoch}; the run stopped and keeps the "
                           f"checkpoint of epoch {self.state.epoch}. Lower optim.lr or check the data.")
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, **{metrics.split_key("train", k): v for k, v in train.items() if k != "lr"}}
        if self.evaluates(epoch):
            with self.evaluated_weights():
                for split in ("val", "test"):
                    row.update({metrics.split_key(split, k): v for k, v in evaluate(b, getattr(b.data, split)).items()})
                self.keep_best(row)
        seconds = time.perf_counter() - started
        row.update(self.timing(train["lr"], seconds, train_seconds))
        self.state.epoch = epoch
        self.state.history.append(row)
        self.state.wall_seconds += seconds
        self.save_last()  # last.pt carries the history, so a kill between these writes loses nothing
        self.run.write_metrics(self.state.history)
        self.run.write_summary(self.summary("running"))
        self.progress.epoch_end(row)

    def evaluates(self, epoch: int) -> bool:
        """Validation and test run every train.eval_every epochs and after the last."""
        epochs = self.built.cfg.train.epochs
        return epoch % self.built.cfg.train.eval_every == 0 or epoch == epochs

    def keep_best(self, row: dict) -> None:
        """best.pt takes the model's weights (those just evaluated) when the policy finds the row's epoch best."""
        b = self.built
        if self.policy.update(row):
            checkpoint.save(self.run.best_path, model=b.model.state_dict(), epoch=row["epoch"], metric=self.policy.monitor,
                            value=row[self.policy.monitor], config=b.cfg.model_dump(mode="json"), classes=b.data.classes)

    def evaluated_weights(self):
        """The weights that are evaluated and kept in best.pt: the average when the run keeps one."""
        return nullcontext() if self.average is None else self.average.applied(self.built.model)

    def timing(self, lr: float, seconds: float, train_seconds: float) -> dict:
        """The once-per-epoch keys of a metrics row (see cnnlab.metrics.EPOCH_METRICS)."""
        images = self.built.data.train.images_per_epoch
        return {"lr": lr, "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
                "images_per_s": round(images / train_seconds, 1),
                "train_gflop_per_s": round(6 * self.built.macs_per_image * images / train_seconds / 1e9, 2),
                "peak_mem_mb": round(peak_memory_mb(self.built.device), 1)}
