"""What the tensor cache's integrity check adds to a cached CIFAR-10 load (it must stay under 10% of the load).

Times, each the median of `--repeats` (default 7) in this process, with the files in the page cache:
- load: torch.load of the CIFAR-10 cache file (50,000 + 10,000 images, 185 MB): a cached load without a check;
- check: what every cached load adds: the source's fingerprint (the archive's stat) and the cache file's stamp
  compared with its record (cnnlab.data.cache.problem);
- full_hash: BLAKE2b over every byte of the cache file: what a load costs extra when the stamp moved, and what
  hashing at every load would cost;
- folder_walk: the fingerprint of the extracted image folder (60,000 JPEGs): what a cached load adds when the
  dataset is given as an image folder instead of an archive.
Prints one JSON line with the times, the ratios to the load, and the machine's load average (a shared machine's
load moves every timing).

    PYTHONPATH=. CNNLAB_DATA=../shared/data python benchmarks/cache_integrity.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from cnnlab.data.archives import extract_once
from cnnlab.data.cache import cache_path, content_hash, load_cached, problem, read_cache, source_fingerprint
from cnnlab.data.root import data_root
from cnnlab.data.sources import locate


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    found = locate("cifar10", data_root())
    load_cached("cifar10", found)  # decodes once if the cache is missing, and warms the page cache
    path = cache_path("cifar10", found.path)
    sources = source_fingerprint(found.path)
    assert problem(path, sources) is None, "the cache did not verify"
    folder = extract_once(found.path) if found.path.is_file() else found.path
    files = sum(len(names) for _, _, names in os.walk(folder))
    times = {
        "load_s": median_seconds(lambda: read_cache(path), args.repeats),
        "check_s": median_seconds(lambda: problem(path, source_fingerprint(found.path)), args.repeats),
        "full_hash_s": median_seconds(lambda: content_hash(path), args.repeats),
        "folder_walk_s": median_seconds(lambda: source_fingerprint(folder), args.repeats),
    }
    load = times["load_s"]
    print(
        json.dumps(
            {
                "benchmark": "cache_integrity",
                "source": str(found.path),
                "cache_mb": round(path.stat().st_size / 2**20, 1),
                **{k: round(v, 5) for k, v in times.items()},
                "check_over_load": round(times["check_s"] / load, 5),
                "full_hash_over_load": round(times["full_hash_s"] / load, 3),
                "folder_walk_over_load": round(times["folder_walk_s"] / load, 3),
                "folder_files": files,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
