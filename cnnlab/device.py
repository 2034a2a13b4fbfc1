"""The machine: which torch device to use, how many cores it lends us, and how fast it multiplies matrices (the
limit speed figures are read against)."""
from __future__ import annotations

import os
import time

import torch

from cnnlab.errors import CnnlabError


def pick_device(name: str) -> torch.device:
    """'auto' (a CUDA GPU if there is one, else the CPU), 'cpu' or 'cuda'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("device cuda was asked for but no CUDA GPU is available; use device auto or cpu")
    return torch.device(name)


def cores() -> int:
    """The CPU cores this process may run on (its affinity), which may be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def matmul_peak_gflops(dtype=torch.float32, n: int = 1024, seconds: float = 0.6, device: str = "cpu") -> float:
    """Measured GFLOP/s of n x n matrix products: what a well-used convolution can approach. After one warm-up
    product, three windows of about seconds/3 each are timed and the fastest counts (a busy moment lowers one)."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    def window() -> float:
        repeats, start = 0, time.perf_counter()
        while repeats < 2 or time.perf_counter() - start < seconds / 3:
            a @ b
            sync()  # on a GPU one product is long enough (n = 8192) for the wait not to matter
            repeats += 1
        return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9

    a @ b
    sync()
    return max(window() for _ in range(3))
