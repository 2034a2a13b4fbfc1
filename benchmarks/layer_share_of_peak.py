"""Where a training step's time goes, layer by layer, and what share of the machine's peak each layer reaches.

    python benchmarks/layer_share_of_peak.py cifar10-airbench94 [--batch 1024] [--steps 5] [overrides ...]

Builds the experiment's network (its weights stay random: time does not depend on them), runs `--warmup` and then
`--steps` training steps on random inputs at the recipe's precision and memory format (bf16 autocast,
channels_last), and times every leaf module's forward and backward with hooks (on a CPU the autograd engine runs
each module's backward in one stretch, so the time between its backward pre-hook and hook is its backward).
FLOPs per module are counted over one step with torch's counter (cnnlab's corrections). Prints a Markdown table:
per layer its GFLOP per step, milliseconds forward and backward, share of the step and GFLOP/s as a share of the
machine's matmul peak at that precision (cnnlab.engine.peak); then the optimizer step and what the layers do not
cover. Shares of the step are of the step with hooks (the hooks cost time of their own, counted in the rest); the
step without them, and its share of peak, is printed below the table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch import nn

from cnnlab.analysis.count import flop_counter, is_leaf
from cnnlab.engine.peak import machine_peak, machine_load
from cnnlab.engine.run_setup import AUTOCAST
from cnnlab.experiment_files import load_experiment
from cnnlab.models import create_model


def build(experiment: str, overrides: list[str]) -> tuple[nn.Module, tuple, int, object]:
    """The experiment's network for its square RGB input and 10 classes (the CIFAR-10 recipes this is for)."""
    cfg = load_experiment(experiment, overrides)
    size = cfg.data.input_size or cfg.data.image_size or 32
    shape = (3, size, size)
    model = create_model(cfg.model, shape, classes=10)
    return model, shape, 10, cfg


class LayerClock:
    """Forward and backward seconds of every leaf module, summed over the steps it is attached for."""

    def __init__(self, model: nn.Module):
        self.forward = defaultdict(float)
        self.backward = defaultdict(float)
        self.started: dict[str, float] = {}
        self.handles = []
        for name, module in model.named_modules():
            if name and is_leaf(module):
                self._attach(name, module)

    def _attach(self, name: str, module: nn.Module) -> None:
        def forward_pre(_module, _inputs):
            self.started[name] = time.perf_counter()

        def forward_post(_module, _inputs, _output):
            self.forward[name] += time.perf_counter() - self.started.pop(name)

        def backward_pre(_module, _grad_output):
            self.started["grad " + name] = time.perf_counter()

        def backward_post(_module, _grad_input, _grad_output):
            self.backward[name] += time.perf_counter() - self.started.pop("grad " + name)

        self.handles += [
            module.register_forward_pre_hook(forward_pre),
            module.register_forward_hook(forward_post),
            module.register_full_backward_pre_hook(backward_pre),
            module.register_full_backward_hook(backward_post),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def forward_backward(model, x, y, precision: str) -> None:
    """The loss of one batch at the recipe's precision, and its gradients."""
    with torch.autocast("cpu", dtype=AUTOCAST.get(precision, torch.bfloat16), enabled=precision in AUTOCAST):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()


def one_step(model, optimizer, x, y, precision: str) -> None:
    forward_backward(model, x, y, precision)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed_steps(model, optimizer, x, y, precision: str, steps: int) -> list[float]:
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        one_step(model, optimizer, x, y, precision)
        seconds.append(time.perf_counter() - start)
    return seconds


def flops_per_module(model, x, y, precision: str) -> dict[str, int]:
    """FLOPs of one forward and backward per leaf module name (the counter's names lose the root's prefix)."""
    counter = flop_counter()
    with counter:
        forward_backward(model, x, y, precision)
    model.zero_grad(set_to_none=True)
    root = type(model).__name__
    return {
        k[len(root) + 1 :]: sum(v.values()) for k, v in counter.get_flop_counts().items() if k.startswith(root + ".")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", default="cifar10-airbench94")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.args.width=128")
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's train.batch_size")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    model, shape, classes, cfg = build(args.experiment, args.overrides)
    precision = cfg.train.precision
    batch = args.batch or cfg.train.batch_size
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    x = torch.randn(batch, *shape).contiguous(memory_format=memory)
    y = torch.randint(0, classes, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    load_before = machine_load()
    peak = machine_peak(torch.device("cpu"), precision if precision in AUTOCAST else "fp32")["gflops"]

    flops = flops_per_module(model, x, y, precision)
    timed_steps(model, optimizer, x, y, precision, args.warmup)
    plain = timed_steps(model, optimizer, x, y, precision, args.steps)
    clock = LayerClock(model)
    try:
        hooked = timed_steps(model, optimizer, x, y, precision, args.steps)
    finally:
        clock.remove()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a step with gradients, as in training (zero_grad left none)
    optimizer_seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        optimizer.step()
        optimizer_seconds.append(time.perf_counter() - start)

    step = statistics.median(plain)
    step_hooked = statistics.median(hooked)  # the layers' times are parts of this one
    total_flops = sum(flops.values())
    per = args.steps
    print(
        f"{args.experiment} {' '.join(args.overrides)}: batch {batch}, {precision}, "
        f"{'channels_last' if cfg.train.channels_last else 'contiguous'}, {torch.get_num_threads()} threads; "
        f"peak {peak:.0f} GFLOP/s; uptime load {load_before:.2f} before\n"
    )
    print("| layer | kind | GFLOP/step | forward ms | backward ms | share of step | share of peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    modules = dict(model.named_modules())
    covered = 0.0
    for name in clock.forward:
        fwd, bwd = clock.forward[name] / per, clock.backward.get(name, 0.0) / per
        covered += fwd + bwd
        gflop = flops.get(name, 0) / 1e9
        share_peak = f"{gflop / (fwd + bwd) / peak:.0%}" if gflop else ""
        print(
            f"| {name} | {type(modules[name]).__name__} | {gflop:.1f} | {fwd * 1e3:.1f} | {bwd * 1e3:.1f} | "
            f"{(fwd + bwd) / step_hooked:.1%} | {share_peak} |"
        )
    optimizer_step = statistics.median(optimizer_seconds)
    rest = step_hooked - covered - optimizer_step
    print(
        f"| optimizer step (SGD, Nesterov) | | | {optimizer_step * 1e3:.1f} | | {optimizer_step / step_hooked:.1%} | |"
    )
    print(f"| the rest (loss, autograd, hooks, casts) | | | {rest * 1e3:.1f} | | {rest / step_hooked:.1%} | |")
    print(
        f"\nstep without hooks: {step * 1e3:.0f} ms median of {per} ({batch / step:.0f} images/s), "
        f"{total_flops / 1e9:.0f} GFLOP: {total_flops / step / 1e9:.0f} GFLOP/s, "
        f"{total_flops / step / 1e9 / peak:.0%} of peak; with hooks {step_hooked * 1e3:.0f} ms; "
        f"uptime load {machine_load():.2f} after"
    )


if __name__ == "__main__":
    main()
