"""The machine: which torch device to use, and how fast it multiplies matrices (the limit speed figures are read against)."""
from __future__ import annotations

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


def matmul_peak_gflops(dtype=torch.float32, n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """Measured GFLOP/s of an n x n matrix product: what a well-used convolution can approach."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9
