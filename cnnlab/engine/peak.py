"""The machine's peak, measured once and kept: the matmul GFLOP/s that a run's training throughput is read against.

Measured once per machine and precision and kept in `<cnnlab cache>/peaks.json`, keyed by the processor (the
CPU model, or the GPU's name), the precision (fp32 or bf16), the torch version and, on a CPU, the number of
threads: what changes the number. Measuring takes about a second; a later run reads the file. The number is
what this process could get when it was measured: a machine busy with other work then gives a lower peak
(remove the entry, or the file, to measure again).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from cnnlab.atomic import write_json
from cnnlab.data.root import cache_dir
from cnnlab.device import matmul_peak_gflops

PEAKS_FILE = "peaks.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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
    return cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)


def peak_key(device: torch.device, precision: str) -> str:
    """What a peak is measured for: processor, precision, torch version (and threads on a CPU)."""
    threads = f" | {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return f"{device.type}: {processor(device)} | {precision} | torch {torch.__version__}{threads}"


def machine_peak(device: torch.device, precision: str, cache: Path | None = None) -> dict:
    """{gflops, precision, device, key, measured, size}: read from the cache file, else measured and added to it."""
    path = Path(cache or cache_dir()) / PEAKS_FILE
    key = peak_key(device, precision)
    try:
        known = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):  # none yet, or unreadable: measure again
        known = {}
    if key not in known:
        n = 1024 if device.type == "cpu" else 8192
        gflops = matmul_peak_gflops(DTYPES[precision], n=n, device=device.type)
        known[key] = {"gflops": round(gflops, 2), "size": n, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(path, known)  # two processes writing at once: one entry may be lost, and is measured again later
    return {"key": key, "precision": precision, "device": device.type, **known[key]}
