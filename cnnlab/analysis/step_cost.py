"""One training step: what it keeps in memory and what it computes, estimated and measured.

Estimate, for a batch of N images:
  parameters         every parameter; buffers apart (BatchNorm running statistics)
  gradients          one value per trainable parameter
  optimizer state    per trainable parameter: SGD 0, SGD with momentum 1, Adam/AdamW 2
  saved activations  the tensors autograd keeps for the backward pass, found by running the forward
                     pass (on `meta`: shapes only, no cost) under torch.autograd.graph.saved_tensors_hooks;
                     nothing is kept below the first layer that has a trainable parameter
  input batch        the N images
It leaves out the backward pass's temporaries (the gradients of activations, alive a layer or two at a
time), so the measured peak is usually somewhat higher; the measured split by kind shows by how much.
Measured: one real step (forward, a stand-in loss, backward, optimizer step) after a warm-up step, with
every tensor storage followed from creation to release through the dispatcher (`LiveTensors`, a
tracemalloc for tensors) -> the peak of live tensor bytes, split by what made them; on CUDA the caching
allocator's own peak (torch.cuda.max_memory_allocated) beside it. torch's MemTracker does the same but
refuses frozen parameters, which fine-tuning needs; the tests check the two agree where both work.
"""

from __future__ import annotations

import copy
import statistics
from contextlib import nullcontext
import time
import weakref
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis.count import _storage, _tensors, flop_counter, hooked, model_device, stand_ins
from cnnlab.config import OptimConfig
from cnnlab.optimizers import make_optimizer, optimizer_label, state_per_parameter


def _bytes(tensors) -> int:
    unique = {id(t): t for t in tensors}
    return sum(t.numel() * t.element_size() for t in unique.values())


@dataclass
class TrainingPass:
    """What a forward and backward pass at batch N keeps and computes (counted on `meta`)."""

    saved_bytes: int = 0
    saved_by_layer: dict = field(default_factory=dict)  # layer -> bytes it keeps for the backward pass
    forward_macs: int = 0
    backward_macs: int = 0

    @property
    def first_saving(self) -> Optional[str]:
        return next(iter(self.saved_by_layer), None)


def first_output(out) -> torch.Tensor:
    """The tensor a loss is taken of: the output, or the first tensor of a tuple or dict (e.g. 'out')."""
    return out if isinstance(out, torch.Tensor) else _tensors(out)[0]


def stand_in_loss(out) -> torch.Tensor:
    """A loss for cost measurements: the mean square of the output (a step's cost does not depend on the loss)."""
    return first_output(out).float().square().mean()


def training_pass(model: nn.Module, input_shape: tuple, batch: int, flops: bool = True) -> TrainingPass:
    """Forward (train mode) on `meta` stand-ins: saved tensors per layer;
    with `flops`, the backward too and MACs each way."""
    names = {m: n for n, m in model.named_modules()}
    result = TrainingPass()
    stack: list[nn.Module] = []
    was_training = model.training
    last_error = None
    for device in ("meta", model_device(model)):
        tensors = stand_ins(model, device)
        x = torch.zeros(batch, *input_shape, device=device)
        seen = {_storage(t) for t in tensors.values()} | {_storage(x)}  # parameters and input are counted apart
        result = TrainingPass()

        def pack(t):
            if _storage(t) not in seen:
                seen.add(_storage(t))
                owner = names[stack[-1]] if stack else ""
                result.saved_by_layer[owner or "(model)"] = (
                    result.saved_by_layer.get(owner or "(model)", 0) + t.untyped_storage().nbytes()
                )
            return t

        try:
            model.train()
            with hooked(names, lambda m, a: stack.append(m), lambda m, a, o: stack.pop() and None):
                counter = flop_counter() if flops else nullcontext()
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), counter as fwd:
                    out = torch.func.functional_call(model, tensors, (x,), strict=False, tie_weights=True)
            result.saved_bytes = sum(result.saved_by_layer.values())
            if flops:
                loss = stand_in_loss(out)
                with flop_counter() as bwd:
                    if loss.requires_grad:
                        loss.backward()
                result.forward_macs, result.backward_macs = fwd.get_total_flops() // 2, bwd.get_total_flops() // 2
            return result
        except Exception as e:  # an operation `meta` cannot run: once more on the model's device, with copies
            last_error = e
            stack.clear()
        finally:
            model.train(was_training)
    raise last_error


@dataclass
class StepMemory:
    """The estimate of one training step's memory, by kind, in bytes."""

    batch_size: int
    optimizer: str
    parameters: int
    buffers: int
    gradients: int
    optimizer_state: int
    saved_activations: int
    input_batch: int
    trainable_params: int
    first_saving: Optional[str]
    forward_macs: int
    backward_macs: Optional[int]  # None: not counted

    @property
    def total(self) -> int:
        return (
            self.parameters
            + self.buffers
            + self.gradients
            + self.optimizer_state
            + self.saved_activations
            + self.input_batch
        )

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["estimate"] = self.total
        return d


def estimate_step(
    model: nn.Module, input_shape: tuple, batch: int, optim: OptimConfig, macs_per_image=None
) -> StepMemory:
    """The step's memory by kind; give `macs_per_image` (from `count`) to skip counting the backward pass's MACs."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    run = training_pass(model, input_shape, batch, flops=macs_per_image is None)
    if macs_per_image is not None:
        run.forward_macs, run.backward_macs = batch * macs_per_image, None
    grads = _bytes(trainable)
    return StepMemory(
        batch_size=batch,
        optimizer=optimizer_label(optim),
        parameters=_bytes(params),
        buffers=_bytes(model.buffers()),
        gradients=grads,
        optimizer_state=state_per_parameter(optim) * grads,
        saved_activations=run.saved_bytes,
        input_batch=batch * int(torch.Size(input_shape).numel()) * 4,
        trainable_params=sum(p.numel() for p in trainable),
        first_saving=run.first_saving,
        forward_macs=run.forward_macs,
        backward_macs=run.backward_macs,
    )


# ---- measured --------------------------------------------------------------------------------


class LiveTensors(TorchDispatchMode):
    """A tracemalloc for tensors: every storage an operation creates is followed until it is freed.

    Each new storage adds its bytes to the live total and holds a weak reference whose callback takes
    them off again when the storage dies; the peak of the total is the step's peak tensor memory.
    Storages alive before the step (parameters, buffers, optimizer state, the input) are counted with
    `hold`. Each storage is labelled with the phase that made it, so the peak can be split by kind.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[int, str]] = {}  # storage id -> (bytes, kind)
        self.refs: dict[int, weakref.ref] = {}
        self.total = self.peak = 0
        self.at_peak: dict[str, int] = {}
        self.phase = "other"

    def hold(self, tensors, kind: str) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t, kind)

    def _add(self, t: torch.Tensor, kind: str) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.live or t.device.type == "meta":
            return
        size = storage.nbytes()
        self.live[key] = (size, kind)
        self.total += size
        self.refs[key] = weakref.ref(storage, lambda _ref, key=key: self._free(key))
        if self.total > self.peak:
            self.peak = self.total
            self.at_peak = {}
            for b, k in self.live.values():
                self.at_peak[k] = self.at_peak.get(k, 0) + b

    def _free(self, key: int) -> None:
        size, _ = self.live.pop(key, (0, ""))
        self.refs.pop(key, None)
        self.total -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            self._add(t, self.phase)
        return out


MEASURED_BY = (
    "live tensor bytes at the peak of one step: every storage followed from creation to release "
    "through the dispatcher (cnnlab.analysis.step_cost.LiveTensors)"
)


@dataclass
class StepMeasurement:
    device: str
    peak_bytes: int
    by_kind: dict  # kind -> bytes live at the peak
    seconds_per_step: Optional[float]
    steps_timed: int
    method: str
    allocator_peak_bytes: Optional[int] = None  # CUDA only: torch.cuda.max_memory_allocated

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def train_step(
    model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer, tracker: Optional[LiveTensors] = None
) -> None:
    """Forward, stand-in loss, backward, optimizer step; `tracker` (if any) learns which phase made each tensor."""

    def phase(name):
        if tracker is not None:
            tracker.phase = name

    phase("activations (forward)")
    loss = stand_in_loss(model(x))
    phase("gradients and temporaries (backward)")
    loss.backward()
    phase("optimizer step")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepRunner:
    """Real training steps on a copy of a model (the model itself is untouched), after one warm-up step."""

    def __init__(self, model: nn.Module, input_shape: tuple, batch: int, optim: OptimConfig, device: torch.device):
        self.device = device
        self.net = copy.deepcopy(model).to(device).train()
        self.optimizer = make_optimizer(self.net, optim, batch)
        self.x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        train_step(self.net, self.x, self.optimizer)  # warm-up: the optimizer state exists from here on
        _sync(device)
        self.times: list[float] = []
        self.tracker: Optional[LiveTensors] = None
        self.allocator_peak: Optional[int] = None

    def measure_memory(self) -> None:
        """One step with every tensor storage followed (and, on CUDA, the allocator's peak above what was there)."""
        tracker = LiveTensors()
        tracker.hold(self.net.parameters(), "parameters")
        tracker.hold(self.net.buffers(), "buffers")
        tracker.hold([t for state in self.optimizer.state.values() for t in state.values()], "optimizer state")
        tracker.hold([self.x], "input batch")
        held = tracker.total
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        with tracker:
            train_step(self.net, self.x, self.optimizer, tracker)
        _sync(self.device)
        if cuda:  # other tensors on the GPU (another copy, the caller's) are left out: only this step's rise counts
            self.allocator_peak = torch.cuda.max_memory_allocated(self.device) - before + held
        self.tracker = tracker

    def time_step(self) -> None:
        _sync(self.device)
        start = time.perf_counter()
        train_step(self.net, self.x, self.optimizer)
        _sync(self.device)
        self.times.append(time.perf_counter() - start)

    def measurement(self) -> StepMeasurement:
        return StepMeasurement(
            str(self.device),
            self.tracker.peak,
            self.tracker.at_peak,
            statistics.median(self.times) if self.times else None,
            len(self.times),
            MEASURED_BY,
            self.allocator_peak,
        )


def measure_step(
    model: nn.Module, input_shape: tuple, batch: int, optim: OptimConfig, device: torch.device, timed_steps: int = 0
) -> StepMeasurement:
    """Peak memory of one real step on a copy of `model`, and the median time of `timed_steps` more."""
    runner = StepRunner(model, input_shape, batch, optim, device)
    runner.measure_memory()
    for _ in range(timed_steps):
        runner.time_step()
    return runner.measurement()
