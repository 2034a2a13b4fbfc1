"""The machine: which torch device to use, how many cores it lends us, and how fast it multiplies matrices (the
limit speed figures are read against)."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

import torch

from cnnlab.errors import CnnlabError


def mps_available() -> bool:
    """Whether torch can use Apple's GPU (mps) here: a macOS build of torch on Apple silicon."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(name: str) -> torch.device:
    """'auto' (a CUDA GPU if there is one, else Apple's mps, else the CPU), 'cpu', 'cuda' or 'mps'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("device cuda was asked for but no CUDA GPU is available; use device auto or cpu")
    if name == "mps" and not mps_available():
        raise CnnlabError(
            "device mps was asked for but torch cannot use Apple's GPU here (it needs a macOS build of "
            "torch on Apple silicon); use device auto or cpu"
        )
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
        if device == "cuda":
            torch.cuda.synchronize()
        elif device == "mps":
            torch.mps.synchronize()

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


def process_peak_mb() -> Optional[float]:
    """The process's peak resident memory in MiB: getrusage where there is `resource` (kB on Linux, bytes on
    macOS), the peak working set on Windows; None where neither tells."""
    try:
        import resource
    except ImportError:
        return _windows_peak_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _windows_peak_mb() -> Optional[float]:
    """PeakWorkingSetSize of GetProcessMemoryInfo (psapi), through ctypes."""
    try:
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
                (name, ctypes.c_size_t)
                for name in (
                    "PeakWorkingSetSize",
                    "WorkingSetSize",
                    "QuotaPeakPagedPoolUsage",
                    "QuotaPagedPoolUsage",
                    "QuotaPeakNonPagedPoolUsage",
                    "QuotaNonPagedPoolUsage",
                    "PagefileUsage",
                    "PeakPagefileUsage",
                )
            ]

        counters = Counters(cb=ctypes.sizeof(Counters))
        process = ctypes.windll.kernel32.GetCurrentProcess()
        if not ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
            return None
        return counters.PeakWorkingSetSize / 2**20
    except (AttributeError, OSError, ImportError):
        return None
