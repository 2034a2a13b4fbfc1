"""The training loop: config in, run folder out. Nothing between you and the tensors.

Each epoch trains, evaluates validation and test, appends one metrics row, keeps `best.pt` (by
validation accuracy) and `last.pt`. Every random draw of epoch e comes from seeds derived from
(seed, e), so a resumed run repeats exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from cnnlab import data as data_mod
from cnnlab.atomic import write_json
from cnnlab.data.colour import decode, decode_targets
from cnnlab.analysis.layers import layer_table
from cnnlab.engine import checkpoint
from cnnlab.engine.optim import l1_penalty, lr_at, make_optimizer
from cnnlab.engine.tasks import make_task
from cnnlab.device import pick_device
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.runfolder import RunFolder
from cnnlab.viz.predictions import colour_rows, segmentation_rows

NAN_CHECK_EVERY = 20  # steps between finiteness checks (each one is a device sync)


@dataclass
class Progress:
    """Hooks for showing progress; the CLI fills them, tests leave them empty."""

    epoch_start: Callable[[int, int], None] = lambda epoch, batches: None
    step: Callable[[], None] = lambda: None
    epoch_end: Callable[[dict], None] = lambda row: None
    message: Callable[[str], None] = lambda text: None


@dataclass
class RunState:
    """What last.pt carries besides the weights: enough to continue as if never stopped."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -1.0  # of the task's monitored validation metric (val_acc, or val_iou)
    wall_seconds: float = 0.0
    initial_loss: Optional[float] = None


def seed_for(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def peak_memory_mb(device: torch.device) -> float:
    """GPU: peak allocated by torch this epoch. CPU: the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(model, batches, task, device, autocast) -> dict[str, float]:
    model.eval()
    tally = task.new_tally(device)
    with torch.no_grad(), autocast():
        for x, y in batches.batches():
            out = model(x)
            task.update(tally, out, y, task.loss(out, y))
    return task.result(tally)


class Trainer:
    """Holds what one run needs (data, model, optimizer, task) and runs its epochs."""

    def __init__(self, cfg, data_root: Path, progress: Progress = Progress()):
        """Load data and build the model first, so a bad config or missing data fails before any folder is made."""
        self.cfg, self.progress = cfg, progress
        self.run: Optional[RunFolder] = None
        self.device = pick_device(cfg.device)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        self.data = data_mod.prepare(cfg, data_root, self.device)
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, self.data.shape, len(self.data.classes))
        self.architecture = layer_table(self.model, self.data.shape)
        self.macs_per_image = sum(row["macs"] for row in self.architecture)
        memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=memory)
        self.forward = torch.compile(self.model) if cfg.train.compile else self.model
        self.optimizer = make_optimizer(self.model.parameters(), cfg.optim)
        self.task = make_task(cfg, len(self.data.classes))
        self.steps_per_epoch = len(self.data.train)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.precision == "bf16")

    # ---- state ---------------------------------------------------------------------------------

    def load_last(self, run: RunFolder) -> RunState:
        """Attach to a run folder and restore its last checkpoint (a fresh state if there is none)."""
        self.run = run
        if not self.run.last_path.exists():
            return RunState()
        ck = checkpoint.load(self.run.last_path, self.device)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        return RunState(**ck["state"])

    def save_last(self, state: RunState) -> None:
        checkpoint.save(self.run.last_path, model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                        state=state.__dict__, config=self.cfg.model_dump(mode="json"), classes=self.data.classes)

    def summary(self, state: RunState, status: str, error: Optional[str] = None) -> dict:
        final = state.history[-1] if state.history else None
        at_best = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
        params = sum(p.numel() for p in self.model.parameters())
        test_at_best = {f"{k}_at_best": v for k, v in at_best.items() if k.startswith("test_") and k != "test_loss"}
        return {
            "name": self.cfg.name,
            "status": status,
            "error": error,
            "epochs_done": state.epoch,
            "epochs": self.cfg.train.epochs,
            "initial_loss": state.initial_loss,
            "expected_initial_loss": self.task.expected_initial_loss,
            "initial_loss_ok": None if state.initial_loss is None else abs(state.initial_loss - self.task.expected_initial_loss) < 0.25 * self.task.expected_initial_loss,
            "monitor": f"val_{self.task.monitor}",
            "best_epoch": state.best_epoch or None,
            "best_value": state.best_value if state.best_epoch else None,
            "best_val_acc": at_best.get("val_acc"),
            "test_acc_at_best": at_best.get("test_acc"),
            **test_at_best,
            "final": final,
            "params": params,
            "macs_per_image": self.macs_per_image,
            "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "device": str(self.device) + ("" if self.device.type == "cpu" else f" ({torch.cuda.get_device_name(self.device)})"),
            "threads": torch.get_num_threads(),
            "seed": self.cfg.seed,
            "wall_seconds": round(state.wall_seconds, 3),
            "task": self.task.name,
            "classes": self.data.classes,
            "input_shape": list(self.data.shape),
            "data": self.data.info,
            "torch": torch.__version__,
        }

    # ---- the loop ------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> Optional[dict]:
        """One pass over the training split; None if the loss stopped being finite."""
        torch.manual_seed(seed_for(self.cfg.seed, epoch))  # dropout and any other global draws
        gen = torch.Generator().manual_seed(seed_for(self.cfg.seed, epoch))  # order and augmentation
        self.model.train()
        tally = self.task.new_tally(self.device)
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        l1 = self.cfg.optim.l1
        step = (epoch - 1) * self.steps_per_epoch
        self.progress.epoch_start(epoch, self.steps_per_epoch)
        for i, (x, y) in enumerate(self.data.train.batches(gen)):
            lr = lr_at(step + i, self.total_steps, self.steps_per_epoch, self.cfg.optim.lr, self.cfg.schedule)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                out = self.forward(x)
                loss = self.task.loss(out, y)
            total = loss + l1 * l1_penalty(self.model) if l1 else loss
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            bad |= ~torch.isfinite(total.detach())
            if (i + 1) % NAN_CHECK_EVERY == 0 and bad.item():
                return None
            self.optimizer.step()
            self.task.update(tally, out.detach(), y, loss)
            self.progress.step()
        if bad.item():
            return None
        result = self.task.result(tally)
        result["lr"] = lr
        return result

    def fit(self, state: RunState) -> RunState:
        cfg = self.cfg
        self.run.write_architecture(self.architecture)
        if self.data.palette is not None:
            write_json(self.run.path / "palette.json", {"colour_class": cfg.data.colour_class,
                                                        "rgb": self.data.palette.round(decimals=2).tolist()})
        if state.initial_loss is None:
            torch.manual_seed(cfg.seed)
            state.initial_loss = evaluate(self.model, self.data.val, self.task, self.device, self.autocast)["loss"]
            expected = self.task.expected_initial_loss
            if abs(state.initial_loss - expected) >= 0.25 * expected:
                self.progress.message(f"warning: loss before training is {state.initial_loss:.3f}, far from ln({self.task.num_classes}) = {expected:.3f}; check the initialisation and the output layer")
        self.run.write_summary(self.summary(state, "running"))
        for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
            started = time.perf_counter()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            train = self.train_epoch(epoch)
            if train is None:
                state.wall_seconds += time.perf_counter() - started
                msg = f"the training loss became NaN or infinite in epoch {epoch}; the run stopped and keeps the checkpoint of epoch {state.epoch}. Lower optim.lr or check the data."
                self.run.write_summary(self.summary(state, "failed", msg))
                raise CnnlabError(msg)
            train_seconds = time.perf_counter() - started
            val = evaluate(self.model, self.data.val, self.task, self.device, self.autocast)
            test = evaluate(self.model, self.data.test, self.task, self.device, self.autocast)
            seconds = time.perf_counter() - started
            row = {"epoch": epoch}
            for split, res in (("train", train), ("val", val), ("test", test)):
                row.update({f"{split}_{k}": v for k, v in res.items() if k != "lr"})
            row.update({"lr": train["lr"], "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3),
                        "images_per_s": round(self.data.train.num_images / train_seconds, 1),
                        # training costs about 3 forward passes: 6 FLOPs per multiply-accumulate
                        "train_gflop_per_s": round(6 * self.macs_per_image * self.data.train.num_images / train_seconds / 1e9, 2),
                        "peak_mem_mb": round(peak_memory_mb(self.device), 1)})
            state.epoch = epoch
            state.history.append(row)
            state.wall_seconds += seconds
            monitored = row[f"val_{self.task.monitor}"]
            if monitored > state.best_value:
                state.best_value, state.best_epoch = monitored, epoch
                checkpoint.save(self.run.best_path, model=self.model.state_dict(), epoch=epoch,
                                metric=f"val_{self.task.monitor}", value=monitored,
                                config=cfg.model_dump(mode="json"), classes=self.data.classes)
            # last.pt carries the history, so a kill between these two writes loses nothing
            self.save_last(state)
            self.run.write_metrics(state.history)
            self.run.write_summary(self.summary(state, "running"))
            self.progress.epoch_end(row)
        summary = self.summary(state, "completed")
        summary["figures"] = self.draw_figures()
        self.run.write_summary(summary)
        return state

    def draw_figures(self) -> list[dict]:
        """Prediction pictures of the best checkpoint on fixed validation and test images."""
        if self.task.name == "classify":
            return []
        self.model.load_state_dict(checkpoint.load(self.run.best_path, self.device)["model"])
        self.model.eval()
        n = self.cfg.figures.count
        drawn = []
        for split in ("val", "test"):
            batches = getattr(self.data, split)
            x, y = batches.first(n)
            with torch.no_grad(), self.autocast():
                out = self.model(x).float()
            path = self.run.figures / f"{self.task.name}-{split}.png"
            name = "validation" if split == "val" else "test"
            if self.task.name == "colourize":
                palette = self.data.palette.to(self.device)
                title = f"Colourization, {name} images ({'annealed mean, T=%g' % self.cfg.figures.temperature if self.cfg.figures.temperature else 'most likely colour'})"
                colour_rows(batches.images[:n], decode(out, palette, self.cfg.figures.temperature),
                            decode_targets(y, palette), self.data.originals[split][:n], path, title)
            else:
                segmentation_rows(batches.images[:n], out.argmax(1), y, path, f"Segmentation, {name} images")
            drawn.append({"file": f"figures/{path.name}", "title": f"{self.task.name} ({name})"})
        return drawn


def train_run(trainer: Trainer, run: RunFolder) -> RunState:
    """Train (or continue) the run in `run`; metrics.jsonl is rewritten from last.pt's history first."""
    state = trainer.load_last(run)
    run.write_metrics(state.history)
    try:
        return trainer.fit(state)
    except KeyboardInterrupt:
        run.write_summary(trainer.summary(state, "stopped"))
        raise
