"""What one run trains with, built from its config: the data on the device, the model, its optimizer, the task
and the metric that picks best.pt. A new run, a resumed one and a restored one are all built here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from cnnlab import data as data_mod
from cnnlab import metrics
from cnnlab.analysis.layer_table import layer_table, training_macs
from cnnlab.data.progress import Progress
from cnnlab.device import pick_device
from cnnlab.engine.distributed import ONE_PROCESS, Spread
from cnnlab.engine.loggers import check_loggers
from cnnlab.engine.peak import machine_peak
from cnnlab.engine.tasks import make_task
from cnnlab.engine.transfer import Transfer, build_transfer, input_statistics, optimizer_groups, uses_torchvision
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.user import is_user_model, keeps_channels_last
from cnnlab.models.init import WHITEN_IMAGES, whiten_first_conv
from cnnlab.optimizers import make_optimizer


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}  # train.precision -> autocast's dtype


def effective_batch(cfg) -> int:
    """The images of one optimizer step: train.batch_size times train.accumulate (what lr_per and the rate see)."""
    return cfg.train.batch_size * cfg.train.accumulate


def check_precision(cfg, device: torch.device) -> None:
    if cfg.train.precision == "fp16" and device.type != "cuda":
        raise CnnlabError(
            f"train.precision fp16 (autocast with a gradient scaler) is for CUDA GPUs; this run is on "
            f"{device.type}: use bf16 (CPUs with AVX-512 run it fast) or fp32"
        )


@dataclass
class BuiltRun:
    cfg: Any
    device: torch.device
    data: Any  # cnnlab.data.Splits
    model: torch.nn.Module
    # what a training step calls: the model, wrapped for DDP under torchrun, compiled when train.compile is on
    forward: Callable
    optimizer: torch.optim.Optimizer
    task: Any
    monitor: str  # the validation metric that picks best.pt, e.g. val_acc
    architecture: list[dict]  # the per-layer table of cnnlab.analysis.layer_table
    macs_per_image: int
    train_macs_per_image: int  # of a training step (counting only the backward pass the trainable layers need)
    transfer: Optional[Transfer] = None  # a torchvision model: its heads, weights loaded and trainable selection
    spread: Spread = ONE_PROCESS  # how the run is spread over processes (torchrun)
    whitened: Optional[torch.nn.Conv2d] = None  # model.whiten: the first convolution, set from the training images
    started_at: Optional[float] = None  # where the run's startup began (time.time()), for startup_seconds

    @property
    def starts_trained(self) -> bool:
        """Whether the weights before the first epoch are pretrained ones (no ln(K) loss to expect then)."""
        return self.transfer is not None and self.cfg.model.pretrained != "none"

    def autocast(self):
        precision = self.cfg.train.precision
        return torch.autocast(
            self.device.type, dtype=AUTOCAST.get(precision, torch.bfloat16), enabled=precision in AUTOCAST
        )

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """fp16's gradient scaler (its gradients would underflow without it); None at other precisions."""
        return torch.amp.GradScaler(self.device.type) if self.cfg.train.precision == "fp16" else None

    @cached_property
    def peak(self) -> dict:
        """The machine's matmul peak at the run's precision (cnnlab.engine.peak):
        measured once per machine, then read."""
        return machine_peak(self.device, self.cfg.train.precision)


def monitored_metric(cfg, task) -> str:
    """train.monitor (the config checked that the task records it), or the task's own metric (val_acc; val_iou for
    segmentation)."""
    return metrics.monitored(task.name, cfg.train.monitor)


def build_run(
    cfg,
    data_root: Path,
    decode: Optional[Progress] = None,
    pretrained: bool = True,
    download: bool = False,
    spread: Spread = ONE_PROCESS,
    started_at: Optional[float] = None,
) -> BuiltRun:
    """Load the data and build the model before anything is written, so a bad config, missing data or missing
    weights fail before a run folder is made (`decode` hears how far a first decode of the data is). The model's
    initial weights come from cfg.seed (the same in every process of a spread run; with model.whiten, the first
    convolution's from the training images), then from model.pretrained unless `pretrained` is false (a
    checkpoint's weights follow: resume, restore); `download` lets torchvision's weights be fetched.
    `started_at`: where the run's clock started."""
    spread.check_batch(cfg.train.batch_size)
    device = spread.device(pick_device(cfg.device))
    check_precision(cfg, device)
    check_loggers(cfg)
    data = data_mod.prepare(cfg, data_root, device, input_statistics(cfg), decode)
    torch.manual_seed(cfg.seed)
    transfer = None
    if uses_torchvision(cfg):
        transfer = build_transfer(cfg, data.shape, len(data.classes), pretrained, download)
        model = transfer.net.module
    else:
        model = create_model(cfg.model, data.shape, len(data.classes), dense=cfg.task != "classify")
    architecture = layer_table(model, data.shape)
    if cfg.train.channels_last and is_user_model(cfg.model.name) and not keeps_channels_last(model, data.shape):
        for batches in (data.train, data.val, data.test):
            batches.channels_last = False
    memory = torch.channels_last if data.train.channels_last else torch.contiguous_format
    model = spread.prepare_model(model, cfg.train.sync_bn, device).to(device, memory_format=memory)
    whitened = None
    if cfg.model.whiten:
        images = data.train.sample(WHITEN_IMAGES, torch.Generator().manual_seed(cfg.seed))
        whitened = whiten_first_conv(model, images, cfg.model.whiten_eps)
    task = make_task(cfg, len(data.classes))
    groups = optimizer_groups(transfer, cfg.optim.body_lr_mult) if transfer else None
    return BuiltRun(
        cfg=cfg,
        device=device,
        data=data,
        model=model,
        forward=training_forward(model, cfg, spread, device),
        optimizer=make_optimizer(model, cfg.optim, effective_batch(cfg), groups),
        task=task,
        monitor=monitored_metric(cfg, task),
        architecture=architecture,
        macs_per_image=sum(row["macs"] for row in architecture),
        train_macs_per_image=training_macs(architecture),
        transfer=transfer,
        spread=spread,
        whitened=whitened,
        started_at=started_at,
    )


def training_forward(model: torch.nn.Module, cfg, spread: Spread, device: torch.device) -> Callable:
    """What a training step calls: the model, wrapped for DDP under torchrun (for the parameters that train now),
    compiled when train.compile is on."""
    trained = spread.wrap(model, device)
    return torch.compile(trained) if cfg.train.compile else trained
