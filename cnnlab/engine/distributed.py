"""One run spread over several processes by torchrun (DistributedDataParallel): joining the process group, the
collectives the engine needs, and the model wrapped for training.

Outside torchrun a run is ONE_PROCESS, whose collectives return at once, so a plain `cnnlab run` takes none of
these paths. Under torchrun every process trains the same run: rank 0 alone reads and writes the run folder
(which lives on its disk), the others receive what it read and wait for it at the collectives.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cnnlab.device import cores
from cnnlab.engine.syncbn import to_global_batch_norm
from cnnlab.errors import CnnlabError

# How long a collective waits for a process that is alive but silent. Long enough for anything one process does
# alone between two collectives (rank 0 writing checkpoints, a process decoding its dataset into the cache the
# first time); a process that dies is noticed at once anyway (its connections close, and torchrun stops the rest).
COLLECTIVE_TIMEOUT = timedelta(seconds=300)
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
RANK_SEED_STRIDE = 2**48  # rank r's private stream is seed + r * stride: rank 0's is the one-process stream

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """Where this process stands in its run: rank of world, and its place on its machine (local rank)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    launched: bool = False  # started by torchrun: there is a process group, even for a world of one

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder and prints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device: for a CUDA run, its own GPU (LOCAL_RANK)."""
        if not (self.launched and device.type == "cuda"):
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise CnnlabError(
                f"{self.local_world} processes on this machine but it has {torch.cuda.device_count()} "
                "GPU(s); start at most one process per GPU (torchrun --nproc-per-node), or set device=cpu"
            )
        return torch.device("cuda", self.local_rank)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise CnnlabError(
                f"train.batch_size {batch_size} is the global batch and must divide evenly among the "
                f"{self.world} processes of this run; choose a multiple of {self.world}"
            )

    def rank_seed(self, seed: int) -> int:
        """A stream of this process's own (dropout), derived from the run's seed; rank 0's is the seed itself."""
        return seed + self.rank * RANK_SEED_STRIDE

    def prepare_model(self, model: torch.nn.Module, sync_bn: bool, device: torch.device) -> torch.nn.Module:
        """The model as it trains spread: batch norm over the global batch if `sync_bn` (torch's SyncBatchNorm on
        GPUs, GlobalBatchNorm on CPUs), before it moves to `device` and the optimizer is made."""
        if not (self.launched and sync_bn):
            return model
        return (
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            if device.type == "cuda"
            else to_global_batch_norm(model)
        )

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """What the training step calls: DistributedDataParallel averages the gradients over the processes."""
        if not self.launched:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- collectives: each returns at once for one process --------------------------------------------------

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the processes, in place."""
        if self.launched:
            dist.all_reduce(value)
        return value

    def sum_tally(self, tally: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric tallies (sums, counts, confusion matrices) summed over the processes, in place."""
        for value in tally.values():
            self.sum(value)
        return tally

    def pooled_mean(self, loss: torch.Tensor, scored: Optional[torch.Tensor]) -> torch.Tensor:
        """This process's mean `loss` over its `scored` items, weighted so that DDP's average of the processes'
        gradients is the gradient of the mean over all their items, as one process would take it. Processes score
        different numbers when crop padding leaves pixels unlabelled; None: equal numbers, nothing to weigh."""
        if not self.launched or scored is None:
            return loss
        total = scored.to(torch.float32)  # a copy: all_reduce works in place
        dist.all_reduce(total)
        return loss * (scored * self.world / total.clamp(min=1))

    def any(self, flag: torch.Tensor) -> bool:
        """Whether `flag` is true in any process (all stop together, e.g. when the loss is no longer finite)."""
        if self.launched:
            flag = flag.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def from_main(self, read: Callable[[], T]) -> T:
        """read() done by rank 0 (the run folder is on its disk) and its result sent to every process; a CnnlabError
        there is raised in every process."""
        if not self.launched:
            return read()
        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = (None, read())
            except CnnlabError as e:
                box[0] = (str(e), None)
        dist.broadcast_object_list(box, src=0)
        error, value = box[0]
        if error is not None:
            raise CnnlabError(error)
        return value

    def everywhere(self, make: Callable[[], T]) -> T:
        """make() done by every process; if it fails in any (a config it refuses, data missing on one machine), every
        process raises that CnnlabError, naming the rank and machine, so that none waits for the others."""
        if not self.launched:
            return make()
        try:
            result, error = make(), None
        except CnnlabError as e:
            result, error = None, str(e)
        errors = [None] * self.world
        dist.all_gather_object(
            errors, None if error is None else f"rank {self.rank} on {socket.gethostname()}: {error}"
        )
        failed = [e for e in errors if e is not None]
        if failed:
            raise CnnlabError("; ".join(failed))
        return result

    def gather(self, value: T) -> list[T]:
        """Every process's `value`, in rank order."""
        if not self.launched:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def record(self, device: torch.device) -> dict:
        """What summary.json keeps of how the run was spread
        (a collective: every process tells its machine and device)."""
        ranks = self.gather(
            {"rank": self.rank, "host": socket.gethostname(), "device": str(device), "threads": torch.get_num_threads()}
        )
        return {
            "world_size": self.world,
            "backend": "nccl" if device.type == "cuda" else "gloo",
            "machines": len({r["host"] for r in ranks}),
            "ranks": ranks,
        }


ONE_PROCESS = Spread()


@contextmanager
def join() -> Iterator[Spread]:
    """This process's Spread for the length of a command: ONE_PROCESS outside torchrun; under torchrun, a member of
    the run's process group (gloo for CPU tensors, and NCCL for CUDA tensors when there are GPUs), with its torch
    threads set. The group is destroyed on the way out, however the command ends: left to the interpreter's exit,
    gloo's threads outlive it and the process aborts (SIGABRT, "terminate called without an active exception")."""
    if not all(key in os.environ for key in TORCHRUN_ENV):
        yield ONE_PROCESS
        return
    spread = Spread(
        rank=int(os.environ["RANK"]),
        world=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        local_world=int(os.environ["LOCAL_WORLD_SIZE"]),
        launched=True,
    )
    gloo_on_loopback(spread.world, spread.local_world)
    cuda = torch.cuda.is_available()
    if cuda and spread.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(spread.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    torch.set_num_threads(threads_per_process(spread.local_world))
    try:
        yield spread
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def threads_per_process(local_world: int) -> int:
    """OMP_NUM_THREADS when the user chose it. torchrun sets it to 1 itself when it starts several processes on a
    machine and none was set; that blanket 1 gives way to the machine's cores shared out between its processes (as
    for sweep workers): with batches resident on the device, torch's thread pool is a process's only CPU work."""
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    if chosen.isdigit() and int(chosen) > 0 and (chosen != "1" or local_world == 1):
        return int(chosen)
    return max(1, cores() // local_world)


def gloo_on_loopback(world: int, local_world: int) -> None:
    """Gloo talks over the loopback interface (GLOO_SOCKET_IFNAME) when every process of the run is on this machine,
    or when the machine has no other interface: not over whatever interface the host's name resolves to, which may
    be down or missing (gloo would fall back to loopback itself, with a warning). A GLOO_SOCKET_IFNAME set is kept;
    on several machines gloo's own choice stands."""
    if "GLOO_SOCKET_IFNAME" in os.environ:
        return
    names = [name for _, name in socket.if_nameindex()]
    loopback = [name for name in names if name.startswith("lo")]
    if loopback and (world == local_world or len(loopback) == len(names)):
        os.environ["GLOO_SOCKET_IFNAME"] = loopback[0]
