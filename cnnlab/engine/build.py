"""What one run trains with, built from its config: the data on the device, the model, its optimizer, the task
and the metric that picks best.pt. A new run, a resumed one and a restored one are all built here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from cnnlab import data as data_mod
from cnnlab import metrics
from cnnlab.analysis.layers import layer_table
from cnnlab.device import pick_device
from cnnlab.engine.tasks import make_task
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.init import WHITEN_IMAGES, whiten_first_conv
from cnnlab.optimizers import make_optimizer


@dataclass
class BuiltRun:
    cfg: Any
    device: torch.device
    data: Any  # cnnlab.data.Splits
    model: torch.nn.Module
    forward: Callable  # the model, compiled when train.compile is on
    optimizer: torch.optim.Optimizer
    task: Any
    monitor: str  # the validation metric that picks best.pt, e.g. val_acc
    architecture: list[dict]  # the per-layer table of cnnlab.analysis.layers
    macs_per_image: int
    whitened: Optional[torch.nn.Conv2d] = None  # model.whiten: the first convolution, set from the training images
    started_at: Optional[float] = None  # where the run's startup began (time.time()), for startup_seconds

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.precision == "bf16")


def monitored_metric(cfg, task) -> str:
    """train.monitor, or the task's own metric (val_acc; val_iou for segmentation); it must be one the task records."""
    monitor = cfg.train.monitor or metrics.split_key("val", task.monitor)
    _, metric = metrics.lookup(monitor)
    if metric is None or metric.key not in task.metrics:
        known = ", ".join(metrics.split_key("val", m) for m in task.metrics)
        raise CnnlabError(f"train.monitor {monitor}: task {task.name} does not record it; choose one of {known}")
    return monitor


def build_run(cfg, data_root: Path, started_at: Optional[float] = None) -> BuiltRun:
    """Load the data and build the model before anything is written, so a bad config or missing data fails
    before a run folder is made. The model's initial weights come from cfg.seed (and, with model.whiten, the
    first convolution's from the training images). `started_at`: where the run's clock started."""
    device = pick_device(cfg.device)
    data = data_mod.prepare(cfg, data_root, device)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, data.shape, len(data.classes))
    architecture = layer_table(model, data.shape)
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory)
    whitened = None
    if cfg.model.whiten:
        images = data.train.sample(WHITEN_IMAGES, torch.Generator().manual_seed(cfg.seed))
        whitened = whiten_first_conv(model, images, cfg.model.whiten_eps)
    task = make_task(cfg, len(data.classes))
    return BuiltRun(cfg=cfg, device=device, data=data, model=model,
                    forward=torch.compile(model) if cfg.train.compile else model,
                    optimizer=make_optimizer(model, cfg.optim, cfg.train.batch_size), task=task,
                    monitor=monitored_metric(cfg, task), architecture=architecture,
                    macs_per_image=sum(row["macs"] for row in architecture), whitened=whitened, started_at=started_at)
