"""The machine's peak, measured once and kept: the matmul GFLOP/s that a run's training throughput is read against.

Measured once per machine and precision and kept in `<cnnlab cache>/peaks.json`, keyed by the processor (the
CPU model, or the GPU's name), the precision (fp32, bf16 or fp16), the torch version and, on a CPU, the number of
threads: what changes the number. Measuring takes about a second; a later run reads the file. The number is
what this process could get when it was measured, so a machine busy with other work gives a lower peak: an entry
measured while the load average exceeded the cores is marked busy, measured again by the first run that finds the
machine calm, and the higher of the two numbers kept (remove the entry, or the file, to start afresh).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from cnnlab.atomic import write_json
from cnnlab.data.root import cache_dir
from cnnlab.device import cores, matmul_peak_gflops

PEAKS_FILE = "peaks.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def processor(device: torch.device) -> str:
    if device.type == "mps":
        return f"Apple mps ({cpu_model()})"
    return cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)


def peak_key(device: torch.device, precision: str) -> str:
    """What a peak is measured for: processor, precision, torch version (and threads on a CPU)."""
    threads = f" | {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return f"{device.type}: {processor(device)} | {precision} | torch {torch.__version__}{threads}"


def machine_load() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def whole_entry(entry) -> bool:
    """Whether a peaks.json entry has the shape machine_peak writes (a positive, finite GFLOP/s among it)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("gflops"), (int, float))
        and 0 < entry["gflops"] < math.inf
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("measured"), str)
        and isinstance(entry.get("busy"), bool)
    )


def read_peaks(path: Path) -> dict:
    """The entries of peaks.json that have the right shape; none when it is missing, unreadable or not a mapping
    (`[1,2]`, `0`): a damaged entry is measured again, never allowed to fail a run."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}
    if not isinstance(known, dict):
        return {}
    return {key: entry for key, entry in known.items() if whole_entry(entry)}


def machine_peak(device: torch.device, precision: str, cache: Path | None = None) -> dict:
    """{gflops, precision, device, key, measured, size, busy}: read from the cache file, else measured and added to
    it; an entry measured on a busy machine is measured again once the machine is calm (see the docstring)."""
    path = Path(cache or cache_dir()) / PEAKS_FILE
    key = peak_key(device, precision)
    known = read_peaks(path)
    busy = device.type == "cpu" and machine_load() > cores()
    old = known.get(key)
    if old is None or (old.get("busy", False) and not busy):
        n = 1024 if device.type == "cpu" else 8192
        gflops = round(matmul_peak_gflops(DTYPES[precision], n=n, device=device.type), 2)
        best = gflops if old is None else max(gflops, old["gflops"])  # a busy reading may have been right after all
        known[key] = {"gflops": best, "size": n, "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "busy": busy}
        write_json(path, known)  # two processes writing at once: one entry may be lost, and is measured again later
    return {"key": key, "precision": precision, "device": device.type, **known[key]}
