"""A running average of the weights, evaluated instead of the raw ones: an exponential moving average (train.ema)
or lookahead (optim.lookahead), which also writes the average back into the model every few steps.

Averaged is the model's floating-point state: parameters and batch-norm running statistics (so the statistics
fit the averaged weights); integer buffers (batch counts) are left alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch


class WeightAverage:
    """avg = d*avg + (1-d)*w every `every` steps, with d = decay**every * progress**power (progress: the share of
    all steps done; power 0 keeps d constant); with write_back the model then takes the average (lookahead)."""

    def __init__(
        self, model: torch.nn.Module, every: int, decay: float, power: float, write_back: bool, total_steps: int
    ):
        self.every, self.decay, self.power, self.write_back = every, decay, power, write_back
        self.total_steps = total_steps
        self.average = {k: v.detach().clone() for k, v in self.floating(model).items()}

    @staticmethod
    def floating(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}

    def pull(self, step: int) -> float:
        """The share d of the average kept at optimizer step `step` (1-based)."""
        return self.decay**self.every * (step / self.total_steps) ** self.power

    def update(self, model: torch.nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based): fold the weights into the average when it is due."""
        if step % self.every:
            return
        d = self.pull(step)
        current = self.floating(model)
        with torch.no_grad():
            for name, avg in self.average.items():
                avg.lerp_(current[name].to(avg.dtype), 1 - d)
                if self.write_back:
                    current[name].copy_(avg)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """The model holds the average inside the block and its own weights again after it."""
        current = self.floating(model)
        kept = {k: v.clone() for k, v in current.items()}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in kept.items():
                    current[name].copy_(value)

    def copy_to(self, model: torch.nn.Module) -> None:
        """Put the average into the model for good (the end of training)."""
        current = self.floating(model)
        with torch.no_grad():
            for name, avg in self.average.items():
                current[name].copy_(avg)

    def state_dict(self) -> dict:
        return dict(self.average)

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, avg in self.average.items():
                avg.copy_(state[name])


def weight_average(model: torch.nn.Module, cfg, total_steps: int) -> Optional[WeightAverage]:
    """The run's average (optim.lookahead or train.ema), or None when it has neither."""
    if cfg.optim.lookahead is not None:
        la = cfg.optim.lookahead
        return WeightAverage(model, la.every, la.decay, la.power, write_back=True, total_steps=total_steps)
    if cfg.train.ema is not None:
        return WeightAverage(model, 1, cfg.train.ema, 0.0, write_back=False, total_steps=total_steps)
    return None
