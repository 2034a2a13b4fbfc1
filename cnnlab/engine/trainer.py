"""The training loop: a built run in, epochs into its run folder out. Nothing between you and the tensors.

Each epoch trains, evaluates validation and test (every train.eval_every epochs and after the last; with a
weight average, the average is evaluated), appends one metrics row, lets the checkpoint policy keep `best.pt`
and writes `last.pt`. Every random draw of epoch e comes from seeds derived from (seed, e), so a resumed run
repeats exactly what an uninterrupted run would have done. How a run ends (completed, failed, stopped, pruned)
is recorded by cnnlab.runner, not here. A stop asked for (`request_stop`, from a signal) takes effect at the
next safe point: after the training step under way, or before an epoch starts; the unfinished epoch is dropped,
last.pt keeps the last finished one.

Spread over processes (torchrun), every process trains its share of each global batch and evaluates its share
of each split; tallies are summed over the processes, and rank 0 alone writes the run folder. The order and
augmentation come from the stream every process shares (so N processes see the batches one would); dropout
from a stream of each process's own, derived from the same seed.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import torch

from cnnlab import metrics
from cnnlab.analysis.layer_table import layer_table, training_macs
from cnnlab.atomic import write_json
from cnnlab.device import process_peak_mb
from cnnlab.engine import checkpoint
from cnnlab.engine.average import weight_average
from cnnlab.engine.run_setup import BuiltRun, effective_batch, training_forward
from cnnlab.engine.checkpoint import CheckpointPolicy
from cnnlab.engine.early_stop import EarlyStop
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.loggers import RunLogs, open_logs
from cnnlab.engine.startup import needs_warm_up, warm_up
from cnnlab.engine.run_record import initial_loss_verdict, run_summary, spread_line
from cnnlab.engine.transfer import select_for_epoch
from cnnlab.optimizers import full_rate, l1_penalty, lr_at
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.runfolder import RunFolder

NAN_CHECK_EVERY = 20  # steps between finiteness checks and running-loss reports (each one is a device sync)


class Pruned(Exception):
    """Raised by a Progress hook to end a run early on purpose (a sweep's pruner): the run ends as pruned."""


class StopRequested(Exception):
    """Raised by the trainer at a safe point after `request_stop`: the run ends as stopped."""


class Diverged(CnnlabError):
    """The training loss stopped being finite: the run ends as failed, keeping its last good epoch."""


@dataclass
class Progress:
    """Hooks for showing progress; the CLI fills them, tests leave them empty."""

    epoch_start: Callable[[int, int], None] = lambda epoch, batches: None
    step: Callable[[Optional[float]], None] = lambda loss: (
        None
    )  # the running loss every NAN_CHECK_EVERY steps, else None
    epoch_end: Callable[[dict], None] = lambda row: None
    message: Callable[[str], None] = lambda text: None
    decode: Callable[[int, int, str], None] = lambda done, total, what: None  # see cnnlab.data.progress


@dataclass
class RunState:
    """What last.pt carries besides the weights and the checkpoint policy: enough to continue as if never stopped."""

    epoch: int = 0
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0
    initial_loss: Optional[float] = None
    startup_seconds: Optional[float] = None  # from the clock's origin (cnnlab.engine.startup) to the first step
    early_stop: Optional[dict] = None  # train.early_stop's record (cnnlab.engine.early_stop)


def seed_for(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def peak_memory_mb(device: torch.device) -> Optional[float]:
    """GPU: peak allocated by torch this epoch. CPU: the process's peak resident memory (None where unknown)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = process_peak_mb()
    return None if peak is None else round(peak, 1)


def split_state(saved: dict, policy: CheckpointPolicy) -> tuple[RunState, dict]:
    """(run state, policy state) from last.pt's `state`; files written before the policy had its own state
    hold best_epoch and best_value there, of the task's metric (a maximum)."""
    saved = dict(saved)
    legacy = {
        "monitor": policy.monitor,
        "mode": "max",
        "best_value": saved.pop("best_value", None),
        "best_epoch": saved.pop("best_epoch", None),
    }
    return RunState(**saved), legacy


class Trainer:
    """Runs the epochs of one built run into its run folder, continuing from last.pt when there is one."""

    def __init__(self, built: BuiltRun, progress: Progress = Progress()):
        self.built, self.progress = built, progress
        self.run: Optional[RunFolder] = None
        self.state = RunState()
        self.policy = CheckpointPolicy(built.monitor, metrics.mode(built.monitor))
        self.spread = built.spread
        self.steps_per_epoch = built.data.train.num_batches(self.spread.world)
        self.updates_per_epoch = -(-self.steps_per_epoch // built.cfg.train.accumulate)  # optimizer steps (ceil)
        self.total_steps = self.updates_per_epoch * built.cfg.train.epochs  # what schedules and averages count
        self.scaler = built.grad_scaler()  # train.precision fp16
        self.clipped = list(built.model.parameters()) if built.cfg.train.clip_grad_norm else None
        self.early_stop = EarlyStop.of(built.cfg, built.monitor)
        self.logs = RunLogs([])  # train.log's, opened by attach()
        self.stop_reason: Optional[str] = None
        self.spread_record: Optional[dict] = None  # how the run is spread (torchrun), filled in by begin()
        self.ddp_trains: Optional[frozenset] = None  # a torchvision model's parameters DDP was last wrapped for
        self.average = weight_average(built.model, built.cfg, self.total_steps)  # train.ema / optim.lookahead

    def request_stop(self, reason: str) -> None:
        """Stop at the next safe point (`reason`, e.g. SIGTERM, is what the runner records)."""
        self.stop_reason = reason

    def stop_asked(self) -> bool:
        """Whether to stop at this safe point: asked in this process, or, spread, in any of them (all must stop at
        the same point; torchrun stops a job with SIGTERM to every process, which arrive at different steps)."""
        if not self.spread.launched:
            return self.stop_reason is not None
        asked = self.spread.any(torch.tensor(self.stop_reason is not None, device=self.built.device))
        if asked and self.stop_reason is None:
            self.stop_reason = "SIGTERM"  # asked in another process
        return asked

    def attach(self, run: RunFolder) -> None:
        """Train into `run` from its last checkpoint (if any); metrics.jsonl is rewritten from last.pt's history.
        A last.pt that cannot continue this run (a best.pt, another config, another model) is refused."""
        self.run = run

        def last() -> Optional[dict]:  # read by rank 0, whose disk holds the run folder
            if not run.last_path.exists():
                return None
            ck = checkpoint.load(run.last_path)
            checkpoint.check_resumable(ck, run.last_path, self.built.cfg.model_dump(mode="json"))
            return ck

        ck = self.spread.from_main(last)
        if ck is not None:
            try:
                self.built.model.load_state_dict(ck["model"])
                self.built.optimizer.load_state_dict(ck["optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise CnnlabError(
                    f"{run.last_path} does not fit the model and optimizer of {run.config_path} "
                    f"({str(e).strip().splitlines()[0]}); resume with the config the run was started with"
                ) from None
            self.state, legacy = split_state(ck["state"], self.policy)
            self.policy.load_state_dict(ck.get("policy", legacy))
            if self.built.transfer is not None and self.built.transfer.pretrained is None:
                self.built.transfer.pretrained = ck.get("pretrained")  # what the run started from, as recorded
            if self.average is not None:
                self.average.load_state_dict(ck["average"])
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
        if self.spread.main:
            run.write_metrics(self.state.history)
            self.logs = open_logs(self.built.cfg, run.path, self.built.monitor, self.state.epoch)
            if self.state.history:
                self.logs.epoch(self.state.history, self.state.history)

    def save_last(self, state: RunState, policy: CheckpointPolicy) -> None:
        checkpoint.save(
            self.run.last_path,
            model=self.built.model.state_dict(),
            optimizer=self.built.optimizer.state_dict(),
            state=state.__dict__,
            policy=policy.state_dict(),
            average=None if self.average is None else self.average.state_dict(),
            scaler=None if self.scaler is None else self.scaler.state_dict(),
            config=self.built.cfg.model_dump(mode="json"),
            classes=self.built.data.classes,
            pretrained=self.built.transfer.pretrained if self.built.transfer else None,
        )

    def summary(self, status: str, error: Optional[str] = None) -> RunSummary:
        summary = run_summary(self.built, self.state, self.policy, status, error, self.spread_record)
        stopped = self.state.early_stop if self.state.early_stop and self.state.early_stop["stopped_at"] else None
        ending = stopped and f"{status} (stopped early at epoch {stopped['stopped_at']})"
        record = stopped and {**stopped, "monitor": self.early_stop.monitor, "ending": ending}
        return summary.updated(stopped_early=record or None)

    # ---- the loop ------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> Optional[dict]:
        """One pass over the training split; None if the loss stopped being finite."""
        b, cfg = self.built, self.built.cfg
        torch.manual_seed(self.spread.rank_seed(seed_for(cfg.seed, epoch)))  # dropout and any other global draws
        gen = torch.Generator().manual_seed(seed_for(cfg.seed, epoch))  # order and augmentation
        self.set_whitening_bias(epoch)
        b.model.train()
        tally = b.task.new_tally(b.device)
        bad = torch.zeros((), dtype=torch.bool, device=b.device)
        recent = torch.zeros((), device=b.device)  # the loss summed since the last check, for the progress bar
        l1, rate, accumulate = cfg.optim.l1, full_rate(cfg.optim, effective_batch(cfg)), cfg.train.accumulate
        step = (epoch - 1) * self.updates_per_epoch
        self.progress.epoch_start(epoch, self.steps_per_epoch)
        for i, (x, y) in enumerate(b.data.train.batches(gen, self.spread.rank, self.spread.world, epoch)):
            if self.state.startup_seconds is None and b.started_at is not None:
                self.state.startup_seconds = round(time.time() - b.started_at, 3)
            if i % accumulate == 0:  # the first batch of an optimizer step
                lr = lr_at(step + i // accumulate, self.total_steps, self.updates_per_epoch, rate, cfg.schedule)
                for group in b.optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_mult", 1.0)  # optim.body_lr_mult for a transfer's body
                b.optimizer.zero_grad(set_to_none=True)
            with b.autocast():
                out = b.forward(x)
                loss = b.task.loss(out, y)
            total = self.spread.pooled_mean(loss, b.task.scored(y)) if self.spread.launched else loss
            total = total + l1 * l1_penalty(b.model) if l1 else total
            scaled = total / accumulate if accumulate > 1 else total  # summed gradients: the effective batch's mean
            (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
            bad |= ~torch.isfinite(total.detach())
            recent += loss.detach().float()
            running = None
            if (i + 1) % NAN_CHECK_EVERY == 0:  # one device sync for the check and the running loss
                stopped, running = self.spread.sum(torch.stack((bad.float(), recent / NAN_CHECK_EVERY))).tolist()
                if stopped:
                    return None
                running /= self.spread.world  # the processes' mean
                recent.zero_()
            if (i + 1) % accumulate == 0 or i + 1 == self.steps_per_epoch:
                self.optimizer_step()
                if self.average is not None:
                    self.average.update(b.model, step + i // accumulate + 1)
            b.task.update(tally, out.detach(), y, loss)
            self.progress.step(running)
            if (not self.spread.launched or (i + 1) % NAN_CHECK_EVERY == 0) and self.stop_asked():
                raise StopRequested(self.stop_reason)
        if self.spread.any(bad):
            return None
        return {**b.task.result(self.spread.sum_tally(tally)), "lr": lr}

    def optimizer_step(self) -> None:
        """The step after a batch (train.accumulate: after the last of its batches): the gradients clipped to
        train.clip_grad_norm (unscaled first at fp16), then the optimizer's step (through the gradient scaler,
        which skips a step whose gradients overflowed and lowers its scale)."""
        optimizer = self.built.optimizer
        if self.clipped is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.clipped, self.built.cfg.train.clip_grad_norm)
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def set_whitening_bias(self, epoch: int) -> None:
        """model.whiten_bias_epochs: the whitening layer's bias trains in the first N epochs only."""
        conv, epochs = self.built.whitened, self.built.cfg.model.whiten_bias_epochs
        if conv is not None and conv.bias is not None and epochs is not None:
            conv.bias.requires_grad_(epoch <= epochs)

    def begin(self) -> None:
        """What a run folder holds before the first epoch: the architecture, the palette, the loss before training,
        and how the run is spread."""
        b = self.built
        if self.spread.launched:
            self.spread_record = {
                **self.spread.record(b.device),
                "batch_per_process": b.cfg.train.batch_size // self.spread.world,
                "sync_bn": b.cfg.train.sync_bn,
                "left_out_per_epoch": b.data.train.num_images - b.data.train.used(self.spread.world),
            }
            self.progress.message(spread_line(self.spread_record))
        if self.spread.main:
            self.run.write_architecture(b.architecture)
        if self.spread.main and b.data.palette is not None:
            write_json(
                self.run.path / "palette.json",
                {"colour_class": b.cfg.data.colour_class, "rgb": b.data.palette.round(decimals=2).tolist()},
            )
        if needs_warm_up(b):
            warm_up(b)
        if self.state.initial_loss is None:
            torch.manual_seed(b.cfg.seed)
            # the untrained network's own outputs: test-time augmentation would average views of a network that
            # has learned nothing, at several times the cost of startup's largest step
            self.state.initial_loss = evaluate(b, b.data.val, tta="none")["loss"]
            expected = b.task.expected_initial_loss
            verdict = initial_loss_verdict(self.state.initial_loss, expected)
            if not b.starts_trained and verdict != "as expected":
                self.progress.message(
                    f"warning: loss before training is {self.state.initial_loss:.3f}, {verdict} "
                    f"(ln({b.task.num_classes}) = {expected:.3f}, "
                    f"{(self.state.initial_loss - expected) / expected:+.1%}); check the "
                    "initialisation and the output layer"
                )
        if self.spread.main:
            self.run.write_summary(self.summary("running"))

    def fit(self) -> None:
        """Train the remaining epochs. Diverged says the loss stopped being finite (the last good epoch stays on
        disk), StopRequested that a stop was asked for; whatever a progress hook raises (Pruned,
        KeyboardInterrupt) passes through."""
        self.begin()
        for epoch in range(self.state.epoch + 1, self.built.cfg.train.epochs + 1):
            if self.stopped_early():
                break
            if self.stop_asked():
                raise StopRequested(self.stop_reason)
            self.run_epoch(epoch)
        if self.average is not None:
            self.average.copy_to(self.built.model)  # what was evaluated is what the run ends with

    def select_trainable(self, epoch: int) -> None:
        """A torchvision model trains the selection of this epoch (train.unfreeze_after); say what it unfroze.
        The cost of a training step follows the selection, and so does DDP (wrapped again when it changes)."""
        b = self.built
        if b.transfer is None:
            return
        before = b.transfer.freeze.trainable
        unfrozen = select_for_epoch(b.transfer, epoch, b.cfg.train.unfreeze_after)
        if b.transfer.freeze.trainable != before:
            b.train_macs_per_image = training_macs(layer_table(b.model, b.data.shape))
        if unfrozen:
            self.progress.message(
                f"epoch {epoch}: {len(unfrozen)} parameter tensors train from now on: {', '.join(unfrozen)}"
            )
        training = frozenset(name for name, p in b.model.named_parameters() if p.requires_grad)
        if b.spread.launched and training != self.ddp_trains:  # DDP averages the gradients it was built for
            b.forward, self.ddp_trains = training_forward(b.model, b.cfg, b.spread, b.device), training

    def run_epoch(self, epoch: int) -> None:
        b = self.built
        self.select_trainable(epoch)
        started = time.perf_counter()
        if b.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(b.device)
        train = self.train_epoch(epoch)
        if train is None:
            self.state.wall_seconds += time.perf_counter() - started
            kept = (
                f"keeps the checkpoint of epoch {self.state.epoch}"
                if self.state.epoch
                else "has no checkpoint (no epoch finished)"
            )
            raise Diverged(
                f"the training loss became NaN or infinite in epoch {epoch}; the run stopped and {kept}. "
                f"Lower optim.lr or check the data."
            )
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, **{metrics.split_key("train", k): v for k, v in train.items() if k != "lr"}}
        policy = copy.copy(self.policy)
        if self.evaluates(epoch):
            with self.evaluated_weights():  # best.pt keeps the weights that were evaluated
                for split in ("val", "test"):
                    row.update({metrics.split_key(split, k): v for k, v in evaluate(b, getattr(b.data, split)).items()})
                if policy.update(row) and self.spread.main:
                    checkpoint.save(
                        self.run.best_path,
                        model=b.model.state_dict(),
                        epoch=epoch,
                        metric=policy.monitor,
                        value=row[policy.monitor],
                        config=b.cfg.model_dump(mode="json"),
                        classes=b.data.classes,
                    )
        seconds = time.perf_counter() - started
        row.update(self.timing(train["lr"], seconds, train_seconds))
        self.save_epoch(row, seconds, policy)
        if self.spread.main:
            self.run.write_metrics(self.state.history)
            self.run.write_summary(self.summary("running"))
            self.logs.epoch(self.state.history)
        self.progress.epoch_end(row)
        if self.stopped_early():
            self.progress.message(self.early_stop.words(self.state.early_stop))

    def stopped_early(self) -> bool:
        """Whether train.early_stop ended the run (in this process or before it was resumed)."""
        return bool(self.state.early_stop and self.state.early_stop["stopped_at"])

    def evaluates(self, epoch: int) -> bool:
        """Validation and test run every train.eval_every epochs and after the last."""
        epochs = self.built.cfg.train.epochs
        return epoch % self.built.cfg.train.eval_every == 0 or epoch == epochs

    def evaluated_weights(self):
        """The weights that are evaluated and kept in best.pt: the average when the run keeps one."""
        return nullcontext() if self.average is None else self.average.applied(self.built.model)

    def save_epoch(self, row: dict, seconds: float, policy: CheckpointPolicy) -> None:
        """last.pt with the epoch (written by rank 0 of a spread run); the trainer's state and `policy` (already
        updated, best.pt written) move on only once it is written, so a failed write (a full disk) leaves them
        describing the checkpoints on disk."""
        early = self.state.early_stop if self.early_stop is None else self.early_stop.after(self.state.early_stop, row)
        state = replace(
            self.state,
            epoch=row["epoch"],
            history=[*self.state.history, row],
            wall_seconds=self.state.wall_seconds + seconds,
            early_stop=early,
        )
        if self.spread.main:
            self.save_last(state, policy)  # last.pt carries the history, so a kill between these writes loses nothing
        self.state, self.policy = state, policy

    def timing(self, lr: float, seconds: float, train_seconds: float) -> dict:
        """The once-per-epoch keys of a metrics row (see cnnlab.metrics.EPOCH_METRICS)."""
        images = (
            self.built.data.train.num_batches(self.spread.world) * self.built.cfg.train.batch_size
            if self.built.data.train.drop_last
            else self.built.data.train.used(self.spread.world)
        )
        gflop_per_s = 2 * self.built.train_macs_per_image * images / train_seconds / 1e9  # a MAC is 2 FLOPs
        return {
            "lr": lr,
            "seconds": round(seconds, 3),
            "train_seconds": round(train_seconds, 3),
            "seconds_per_step": round(train_seconds / self.steps_per_epoch, 5),
            "images_per_s": round(images / train_seconds, 1),
            "train_gflop_per_s": round(gflop_per_s, 2),
            "peak_percent": round(100 * gflop_per_s / self.built.peak["gflops"], 2),
            "peak_mem_mb": peak_memory_mb(self.built.device),
        }
