"""torch's process-wide switches, set for one run and put back after it, so that a run does not change the
next one in the same process (a sweep worker trains many)."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_flags(deterministic: bool):
    """deterministic: true makes torch refuse nondeterministic kernels and turns cuDNN's autotuner off (it may
    pick other kernels from run to run); otherwise the autotuner is on. Both come back as they were."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
