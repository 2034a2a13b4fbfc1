"""Batch norm over the global batch for processes on CPUs: torch's SyncBatchNorm runs on GPUs only (its kernels
have no CPU version), so `train.sync_bn: true` on gloo uses this one, with the same state_dict as nn.BatchNorm.

Statistics are sums all-reduced over the processes; the all-reduce is differentiable (its backward all-reduces
the gradient), so every process's gradient holds what the statistics owe to the other processes' losses, as
one process computing batch norm over the whole batch would have it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SumOverProcesses(torch.autograd.Function):
    """y = the sum of x over all processes; dL/dx = the sum of dL/dy over all processes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm (1d or 2d) whose training statistics are those of the global batch: mean, then variance about
    it (two passes, as nn.BatchNorm computes them), in float32. Evaluation uses the running statistics, alone."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local_count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32, device=x.device)
        sums = _SumOverProcesses.apply(torch.cat([xf.sum(dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = xf - mean.view(shape)
        var = _SumOverProcesses.apply(centred.square().sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * count / (count - 1).clamp_min(1))
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """Running statistics as nn.BatchNorm keeps them (the variance unbiased)."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased_var, factor)


def to_global_batch_norm(module: nn.Module) -> nn.Module:
    """`module` with every batch norm layer replaced by a GlobalBatchNorm holding the same values (before the
    optimizer is made: the parameters are new objects)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        replaced = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        replaced.load_state_dict(module.state_dict())
        return replaced.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, to_global_batch_norm(child))
    return module
