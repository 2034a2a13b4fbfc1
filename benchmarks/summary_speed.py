"""How long `cnnlab summary` takes: ResNet-18 at 224x224 in numbers, the colourization U-Net in formulas.

Each case times what the command does after its imports (resolve the model, build it, count, estimate
the training step, format the document), without the optional measured step (--no-measure). It runs
`repeats` times in this process (sympy's cache cleared before each, so no run reuses the last one's
work) and prints one JSON line: the first and the median time, and the machine's load average,
because on a shared machine the load moves every timing.

    PYTHONPATH=. python benchmarks/summary_speed.py
"""

from __future__ import annotations

import json
import os
import statistics
import time

import sympy
import torch

from cnnlab.analysis.count import count
from cnnlab.analysis.render import render
from cnnlab.analysis.network_summary import Options, document, summarise
from cnnlab.analysis.subject import resolve


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        sympy.core.cache.clear_cache()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def report(name: str, times: list[float], **extra) -> None:
    print(
        json.dumps(
            {
                "benchmark": name,
                "seconds_first": round(times[0], 4),
                "seconds_median": round(statistics.median(times), 4),
                "repeats": len(times),
                "threads": torch.get_num_threads(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                **extra,
            }
        ),
        flush=True,
    )


def resnet18_numeric():
    result = summarise(resolve("resnet18"), (3, 224, 224), Options(measure=False))
    render(document(result), "table")
    return result


def resnet18_count_only(model):
    return count(model, (3, 224, 224))


def colour_unet_symbolic():
    result = summarise(resolve("colour_unet"), (1, "H", "W"), Options(symbolic=True))
    render(document(result), "markdown")
    return result


def main() -> None:
    times, result = timed(resnet18_numeric, 5)
    report(
        "summary resnet18 3x224x224 (numbers; build, count, step estimate, table)",
        times,
        params=result.base.total["params"],
        macs=result.base.total["macs"],
    )
    model = resolve("resnet18").build((3, 224, 224))
    times, _ = timed(lambda: resnet18_count_only(model), 5)
    report("count resnet18 3x224x224 (the hooked forward pass alone, on meta)", times)
    times, result = timed(colour_unet_symbolic, 3)
    report(
        "summary colour_unet 1xHxW --symbolic (formulas in NF, NC, k, H, W; simplified; markdown)",
        times,
        params=str(result.base.total["params"]),
        macs=str(result.base.total["macs"]),
    )


if __name__ == "__main__":
    main()
