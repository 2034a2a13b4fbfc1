"""Work beyond the machine's memory is refused before anything is allocated, with the figure: a `--input
3x100000x100000` or a `--batch-size 100000000` would otherwise end in an allocator error for terabytes."""

from __future__ import annotations

import os
from itertools import chain
from typing import Callable

import torch
from torch import nn

from cnnlab.errors import CnnlabError


def memory_of(device: torch.device) -> int:
    """The bytes of memory `device` has: a GPU's own, else the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def refuse_beyond(nbytes: int, what: str, advice: str, device: torch.device = torch.device("cpu")) -> None:
    """Raise a CnnlabError when `what` needs more than `device` has."""
    have = memory_of(device)
    if nbytes > have:
        raise CnnlabError(
            f"{what}: {nbytes / 2**30:,.1f} GiB needed, more than the {have / 2**30:,.1f} GiB of "
            f"memory this machine's {device.type} has; {advice}"
        )


def build_within_memory(build: Callable[[], nn.Module], advice: str) -> nn.Module:
    """`build()`, first run on the meta device (no memory) to refuse parameters and buffers beyond the machine's
    memory; a model that cannot be built on meta is built as it is."""
    try:
        with torch.device("meta"):
            stand_in = build()
    except Exception:
        return build()
    nbytes = sum(t.numel() * t.element_size() for t in chain(stand_in.parameters(), stand_in.buffers()))
    refuse_beyond(nbytes, "the model's parameters and buffers", advice)
    return build()
