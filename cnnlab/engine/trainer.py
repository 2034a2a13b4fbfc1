"""The training loop: a built run in, epochs into its run folder out. Nothing between you and the tensors.

Each epoch trains, evaluates validation and test, appends one metrics row, lets the checkpoint policy
keep `best.pt` and writes `last.pt`. Every random draw of epoch e comes from seeds derived from
(seed, e), so a resumed run repeats exactly what an uninterrupted run would have done. How a run ends
(completed, failed, stopped, pruned) is recorded by cnnlab.runner, not here.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from cnnlab import metrics
from cnnlab.analysis.layers import layer_table, training_macs
from cnnlab.atomic import write_json
from cnnlab.engine import checkpoint
from cnnlab.engine.build import BuiltRun
from cnnlab.engine.checkpoint import CheckpointPolicy
from cnnlab.engine.optim import l1_penalty, lr_at
from cnnlab.engine.summary import initial_loss_ok, run_summary
from cnnlab.engine.transfer import select_for_epoch
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


def seed_for(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated by torch this epoch. CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(built: BuiltRun, batches) -> dict[str, float]:
    built.model.eval()
    tally = built.task.new_tally(built.device)
    with torch.no_grad(), built.autocast():
        for x, y in batches.batches():
            out = built.model(x)
            built.task.update(tally, out, y, built.task.loss(out, y))
    return built.task.result(tally)


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

    def attach(self, run: RunFolder) -> None:
        """Train into `run` from its last checkpoint (if any); metrics.jsonl is rewritten from last.pt's history."""
        self.run = run
        if run.last_path.exists():
            ck = checkpoint.load(run.last_path)
            self.built.model.load_state_dict(ck["model"])
            self.built.optimizer.load_state_dict(ck["optimizer"])
            self.state, legacy = split_state(ck["state"], self.policy)
            self.policy.load_state_dict(ck.get("policy", legacy))
            if self.built.transfer is not None and self.built.transfer.pretrained is None:
                self.built.transfer.pretrained = ck.get("pretrained")  # what the run started from, as recorded
        run.write_metrics(self.state.history)

    def save_last(self) -> None:
        checkpoint.save(self.run.last_path, model=self.built.model.state_dict(), optimizer=self.built.optimizer.state_dict(),
                        state=self.state.__dict__, policy=self.policy.state_dict(),
                        config=self.built.cfg.model_dump(mode="json"), classes=self.built.data.classes,
                        pretrained=self.built.transfer.pretrained if self.built.transfer else None)

    def summary(self, status: str, error: Optional[str] = None) -> dict:
        return run_summary(self.built, self.state, self.policy, status, error)

    # ---- the loop ------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> Optional[dict]:
        """One pass over the training split; None if the loss stopped being finite."""
        b, cfg = self.built, self.built.cfg
        torch.manual_seed(seed_for(cfg.seed, epoch))  # dropout and any other global draws
        gen = torch.Generator().manual_seed(seed_for(cfg.seed, epoch))  # order and augmentation
        b.model.train()
        tally = b.task.new_tally(b.device)
        bad = torch.zeros((), dtype=torch.bool, device=b.device)
        l1 = cfg.optim.l1
        step = (epoch - 1) * self.steps_per_epoch
        self.progress.epoch_start(epoch, self.steps_per_epoch)
        for i, (x, y) in enumerate(b.data.train.batches(gen)):
            lr = lr_at(step + i, self.total_steps, self.steps_per_epoch, cfg.optim.lr, cfg.schedule)
            for group in b.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)  # optim.body_lr_mult for a transfer's body
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
            b.task.update(tally, out.detach(), y, loss)
            self.progress.step()
        if bad.item():
            return None
        return {**b.task.result(tally), "lr": lr}

    def begin(self) -> None:
        """What a run folder holds before the first epoch: the architecture, the palette, the loss before training."""
        b = self.built
        self.run.write_architecture(b.architecture)
        if b.data.palette is not None:
            write_json(self.run.path / "palette.json", {"colour_class": b.cfg.data.colour_class,
                                                        "rgb": b.data.palette.round(decimals=2).tolist()})
        if self.state.initial_loss is None:
            torch.manual_seed(b.cfg.seed)
            self.state.initial_loss = evaluate(b, b.data.val)["loss"]
            expected = b.task.expected_initial_loss
            if not b.starts_trained and not initial_loss_ok(self.state.initial_loss, expected):
                self.progress.message(f"warning: loss before training is {self.state.initial_loss:.3f}, far from "
                                      f"ln({b.task.num_classes}) = {expected:.3f}; check the initialisation and the output layer")
        self.run.write_summary(self.summary("running"))

    def fit(self) -> None:
        """Train the remaining epochs. A CnnlabError says the loss stopped being finite (the last good epoch
        stays on disk); whatever a progress hook raises (Pruned, KeyboardInterrupt) passes through."""
        self.begin()
        for epoch in range(self.state.epoch + 1, self.built.cfg.train.epochs + 1):
            self.run_epoch(epoch)

    def select_trainable(self, epoch: int) -> None:
        """A torchvision model trains the selection of this epoch (train.unfreeze_after); say what it unfroze.
        The cost of a training step follows the selection."""
        b = self.built
        if b.transfer is None:
            return
        before = b.transfer.freeze.trainable
        unfrozen = select_for_epoch(b.transfer, epoch, b.cfg.train.unfreeze_after)
        if b.transfer.freeze.trainable != before:
            b.train_macs_per_image = training_macs(layer_table(b.model, b.data.shape))
        if unfrozen:
            self.progress.message(f"epoch {epoch}: {len(unfrozen)} parameter tensors train from now on: {', '.join(unfrozen)}")

    def run_epoch(self, epoch: int) -> None:
        b = self.built
        self.select_trainable(epoch)
        started = time.perf_counter()
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        train = self.train_epoch(epoch)
        if train is None:
            self.state.wall_seconds += time.perf_counter() - started
            raise CnnlabError(f"the training loss became NaN or infinite in epoch {epoch}; the run stopped and keeps the "
                           f"checkpoint of epoch {self.state.epoch}. Lower optim.lr or check the data.")
        train_seconds = time.perf_counter() - started
        val, test = evaluate(b, b.data.val), evaluate(b, b.data.test)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch}
        for split, result in (("train", train), ("val", val), ("test", test)):
            row.update({metrics.split_key(split, k): v for k, v in result.items() if k != "lr"})
        row.update(self.timing(train["lr"], seconds, train_seconds))
        self.state.epoch = epoch
        self.state.history.append(row)
        self.state.wall_seconds += seconds
        if self.policy.update(row):
            checkpoint.save(self.run.best_path, model=b.model.state_dict(), epoch=epoch, metric=self.policy.monitor,
                            value=row[self.policy.monitor], config=b.cfg.model_dump(mode="json"), classes=b.data.classes)
        self.save_last()  # last.pt carries the history, so a kill between these writes loses nothing
        self.run.write_metrics(self.state.history)
        self.run.write_summary(self.summary("running"))
        self.progress.epoch_end(row)

    def timing(self, lr: float, seconds: float, train_seconds: float) -> dict:
        """The once-per-epoch keys of a metrics row (see cnnlab.metrics.EPOCH_METRICS)."""
        images = self.built.data.train.num_images
        return {"lr": lr, "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
                "seconds_per_step": round(train_seconds / self.steps_per_epoch, 5),
                "images_per_s": round(images / train_seconds, 1),
                "train_gflop_per_s": round(2 * self.built.train_macs_per_image * images / train_seconds / 1e9, 2),
                "peak_mem_mb": round(peak_memory_mb(self.built.device), 1)}
