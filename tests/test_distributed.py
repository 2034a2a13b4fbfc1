"""One run on several processes (issue 12): torchrun with gloo on real Fashion-MNIST (and CIFAR-10) slices, one thread
per process.

What "the same run" means here: at the same global batch, N processes see exactly the batches one process sees
(rows rank::N of each global batch, augmentation drawn for the whole batch), and DDP averages equal shares'
mean gradients, which is the global batch's mean gradient. Only the order of float sums differs, so:
- without batch norm (table1; seg_unet with bn off, whose processes hold different numbers of labelled pixels): final
  weights within WEIGHT_TOL of one process's;
- with batch norm and sync_bn: within BN_TOL (looser: see its comment).
Over a few steps only: training amplifies any float difference, the more so at high learning rates, as it would
between two one-process runs whose sums are ordered differently (table1 at lr 0.01, 1600 images an epoch: 3e-8 after
one epoch, 6.5e-3 after three, the losses alike). Hence a moderate rate (0.01) and 10 to 20 steps; a resumed run
is compared with an uninterrupted one of as many processes, which it repeats exactly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cnnlab.data.loader import DeviceBatches
from cnnlab.engine import checkpoint
from cnnlab.engine.distributed import ONE_PROCESS, Spread, gloo_on_loopback, join, threads_per_process
from cnnlab.engine.restore import restore
from cnnlab.engine.syncbn import GlobalBatchNorm
from cnnlab.errors import CnnlabError
from cnnlab.metrics import TIMING_KEYS
from cnnlab.runfolder import RunFolder
from tests.conftest import first_epoch_done, quick_config

# 480 training images (600 less a fifth for validation): 10 global batches of 48, 24 per process
SLICE = ["data.train_subset=600", "data.test_subset=100", "data.val_fraction=0.2", "train.batch_size=48"]
SGD = ["optim.name=sgd", "optim.lr=0.01", "optim.momentum=0.9", "data.augment.flip=true"]
TABLE1 = ["model.name=table1", *SGD, *SLICE]  # no batch norm, no dropout
# Float32 rounding of sums taken in another order (halves of the batch, then DDP's all-reduce): ~1e-7 relative per
# step, measured 1.5e-8 after 20 steps; 1e-6 leaves room and is still ~1e4 times below a one-step update.
WEIGHT_TOL = 1e-6
# Batch norm's statistics differ in the last bits too, and training with batch norm amplifies that more; besides,
# torch's own CPU batch norm (the one-process reference) sums each channel's B*H*W values in float32, off by
# ~1e-4 of the batch mean at these sizes. Measured 1.7e-5 after these 10 steps (at a constant rate 0.01: 1.2e-4,
# and 1.1e-5 against the same statistics computed exactly in one process); batch norm per process (sync_bn off)
# ends ~2e-2 away.
BN_TOL = 2e-4
KILL_STOP_S = 60  # the survivors of a kill -9 must be gone within this (measured: a few seconds)


def env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def torchrun(launch: list[str], command: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "cnnlab", *command],
        env=kw.pop("env", env()),
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 300),
        **kw,
    )


def one_process(runs_dir: Path, overrides: list[str], experiment: str = "quickstart") -> RunFolder:
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "run", experiment, *overrides, "--runs-dir", str(runs_dir)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return RunFolder(Path(done.stdout.strip().splitlines()[-1]))


def only_run(runs_dir: Path) -> RunFolder:
    folders = [p.parent for p in runs_dir.glob("*/*/config.yaml")]
    assert len(folders) == 1, folders
    return RunFolder(folders[0])


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def weight_gap(a: RunFolder, b: RunFolder) -> float:
    wa, wb = checkpoint.load(a.last_path)["model"], checkpoint.load(b.last_path)["model"]
    assert wa.keys() == wb.keys()  # the plain model's names: no `module.` prefix
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STANDALONE = ["--standalone", "--nproc-per-node=2"]


# ---- without processes: how a split is shared, and the choices made at start -------------------------------


def test_spread_training_batches_are_the_one_process_batches(data_root):
    """Rows rank::2 of each global batch, crop and flip included: put back together, the one-process batches."""
    from cnnlab import data as data_mod

    cfg = quick_config(data={"augment": {"crop_padding": 2, "flip": True}}, train={"batch_size": 48})
    train = data_mod.prepare(cfg, data_root, torch.device("cpu")).train
    one = list(train.batches(torch.Generator().manual_seed(3)))
    shares = [list(train.batches(torch.Generator().manual_seed(3), rank, 2)) for rank in range(2)]
    assert len(one) == len(shares[0]) == len(shares[1]) == train.num_batches(2) == 10
    for (x, y), (x0, y0), (x1, y1) in zip(one, *shares):
        assert x0.shape[0] == x1.shape[0] == x.shape[0] // 2
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
    assert train.crop_padding == 2 and train.flip  # augmented, and drawn alike


def test_the_remainder_sits_out_and_evaluation_shares_repeat_nothing():
    """103 images, global batch 12, 4 processes: the permutation's last 103 % 4 = 3 sit out, so every process takes
    25; the 8 full global batches are the one-process ones. Evaluation: contiguous shares, each image once."""
    images = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1).expand(103, 1, 4, 4).contiguous()
    labels = torch.arange(103)
    common = dict(
        batch_size=12, device=torch.device("cpu"), scale=torch.ones(1), shift=torch.zeros(1), channels_last=False
    )
    train = DeviceBatches(images, labels, shuffle=True, crop_padding=1, flip=True, **common)
    shares = [list(train.batches(torch.Generator().manual_seed(0), rank, 4)) for rank in range(4)]
    one = list(train.batches(torch.Generator().manual_seed(0)))
    assert [sum(len(y) for _, y in share) for share in shares] == [25] * 4 and train.used(4) == 100
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat([y for share in shares for _, y in share]).tolist()) == sorted(order[:100].tolist())
    for b in range(8):
        for rank in range(4):
            x, y = shares[rank][b]
            assert torch.equal(y, one[b][1][rank::4]) and torch.equal(x, one[b][0][rank::4])
    assert [len(shares[rank][8][1]) for rank in range(4)] == [1] * 4  # 100 - 96 images in the last global batch
    evaluation = DeviceBatches(images, labels, **common)
    parts = [torch.cat([y for _, y in evaluation.batches(rank=rank, world=4)]) for rank in range(4)]
    assert torch.equal(torch.cat(parts), labels) and [len(p) for p in parts] == [25, 26, 26, 26]


def test_a_batch_the_processes_cannot_share_is_refused():
    Spread(world=4, launched=True).check_batch(48)
    with pytest.raises(CnnlabError, match="train.batch_size 50 is the global batch .* 4 processes .* multiple of 4"):
        Spread(world=4, launched=True).check_batch(50)


def test_outside_torchrun_nothing_is_spread(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with join() as spread:
        assert spread is ONE_PROCESS
    assert ONE_PROCESS.main and ONE_PROCESS.world == 1
    assert ONE_PROCESS.rank_seed(123) == 123  # one process draws dropout from the run's own stream, as before
    assert ONE_PROCESS.from_main(lambda: 5) == 5 and ONE_PROCESS.gather("x") == ["x"]


def test_threads_per_process(monkeypatch):
    monkeypatch.setattr("cnnlab.engine.distributed.cores", lambda: 16)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_process(4) == 4  # torchrun's blanket 1 with several processes: the cores shared out
    assert threads_per_process(1) == 1  # one process per machine: torchrun sets nothing, so 1 is the user's
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_process(4) == 3  # chosen by the user
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads_per_process(32) == 1


def test_gloo_talks_over_loopback_when_every_process_is_on_this_machine(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    gloo_on_loopback(world=4, local_world=2)  # other machines take part: gloo's own choice stands
    assert "GLOO_SOCKET_IFNAME" not in os.environ
    gloo_on_loopback(world=2, local_world=2)
    assert os.environ["GLOO_SOCKET_IFNAME"] == "lo"
    monkeypatch.delenv("GLOO_SOCKET_IFNAME")
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo")])
    gloo_on_loopback(world=4, local_world=2)  # no network on this machine: loopback is all there is
    assert os.environ["GLOO_SOCKET_IFNAME"] == "lo"
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")
    gloo_on_loopback(world=2, local_world=2)
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth7"  # the user's choice is kept


# ---- batch norm over the global batch, on two CPU processes --------------------------------------------------


def _global_batch_norm_worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = (torch.randn(16, 3, 6, 6) * 2 + 0.5).contiguous(memory_format=torch.channels_last)
    weights = torch.randn(16, 3, 6, 6)  # the loss: sum(y * weights), so every output has its own gradient
    exact = torch.nn.BatchNorm2d(3).double()
    exact.weight.data.uniform_(0.5, 1.5)
    exact.bias.data.uniform_(-1, 1)
    spread = GlobalBatchNorm(3)
    spread.load_state_dict(exact.state_dict())
    whole = x.double().requires_grad_()
    expected = exact(whole)
    (expected * weights.double()).sum().backward()
    mine = x[rank::2].clone().requires_grad_()
    y = spread(mine)
    (y * weights[rank::2]).sum().backward()
    for p in (spread.weight, spread.bias):
        dist.all_reduce(p.grad)
    if rank == 0:
        out.update(
            y=(y.double() - expected[0::2]).abs().max().item(),
            dx=(mine.grad.double() - whole.grad[0::2]).abs().max().item(),
            dw=(spread.weight.grad.double() - exact.weight.grad).abs().max().item(),
            db=(spread.bias.grad.double() - exact.bias.grad).abs().max().item(),
            mean=(spread.running_mean.double() - exact.running_mean).abs().max().item(),
            var=(spread.running_var.double() - exact.running_var).abs().max().item(),
        )
    dist.destroy_process_group()


@pytest.mark.slow
def test_global_batch_norm_is_batch_norm_over_the_whole_batch():
    """Two processes with half a batch each: outputs, input and parameter gradients, running statistics as float64
    batch norm over the whole batch gives them (float32 rounding only)."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_global_batch_norm_worker, args=(free_port(), out), nprocs=2)
        gaps = dict(out)
    assert gaps and all(gap < 2e-5 for gap in gaps.values()), gaps


# ---- torchrun ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table1_alone(data_root, tmp_path_factory) -> RunFolder:
    """The one-process reference: table1, two epochs (20 steps), one thread."""
    return one_process(tmp_path_factory.mktemp("alone"), [*TABLE1, "train.epochs=2"])


@pytest.mark.slow
def test_two_processes_train_one_run_equal_to_one_process(data_root, tmp_path, table1_alone):
    done = torchrun(STANDALONE, ["run", "quickstart", *TABLE1, "train.epochs=2", "--runs-dir", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    assert done.stdout.strip().splitlines()[-1] == str(run.path)  # rank 0 alone prints
    assert done.stdout.count("epoch 2/2") == 1
    summary = run.summary().to_dict()
    assert summary["status"] == "completed" and summary["world_size"] == 2
    spread = summary["spread"]
    assert spread["backend"] == "gloo" and [r["device"] for r in spread["ranks"]] == ["cpu", "cpu"]
    assert spread["batch_per_process"] == 24 and spread["left_out_per_epoch"] == 0 and spread["machines"] == 1
    assert "Under torchrun: spread over 2 process(es)" in (run.path / "report.md").read_text()
    gap = weight_gap(run, table1_alone)
    print(f"table1, 2 processes vs 1, 20 steps: max |weight difference| = {gap:.3g}")
    assert gap < WEIGHT_TOL
    for mine, alone in zip(run.metrics(), table1_alone.metrics()):  # the metrics are summed over the whole split
        for key, value in alone.items():
            if key not in TIMING_KEYS:
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    built = restore(run, data_root)  # best.pt loads into a one-process model, as reports and transfer load it
    assert not isinstance(built.model, torch.nn.parallel.DistributedDataParallel)


@pytest.mark.slow
def test_sync_bn_two_processes_close_to_one_process(data_root, tmp_path):
    bn = [*SGD, *SLICE, "data.augment.crop_padding=2", "train.sync_bn=true", "train.epochs=1"]  # simplenn: batch norm
    done = torchrun(STANDALONE, ["run", "quickstart", *bn, "--runs-dir", str(tmp_path / "spread")])
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "spread")
    assert run.summary().to_dict()["spread"]["sync_bn"] and "over the global batch" in done.stdout
    gap = weight_gap(run, one_process(tmp_path / "alone", bn))
    print(f"simplenn with sync_bn, 2 processes vs 1, 10 steps: max |weight difference| = {gap:.3g}")
    assert gap < BN_TOL


@pytest.mark.slow
def test_segmentation_with_unlabelled_padding_trains_alike_on_two_processes(data_root, tmp_path):
    """Crop padding leaves pixels unlabelled, so the two halves of a batch hold different numbers of labelled pixels:
    each process's mean loss is weighted by its share of them, and the gradient is the whole batch's mean."""
    seg = [
        "model.bn=false",
        "model.args.NF=4",
        "data.image_size=32",
        "data.augment.crop_padding=8",
        "train.epochs=2",
        "train.batch_size=8",
        "train.precision=fp32",
        "train.ema=null",  # the raw weights are compared, not their average
        "train.tta=none",
        *SGD,
    ]
    done = torchrun(STANDALONE, ["run", "seg-unet", *seg, "--runs-dir", str(tmp_path / "spread")])
    assert done.returncode == 0, done.stderr
    gap = weight_gap(only_run(tmp_path / "spread"), one_process(tmp_path / "alone", seg, "seg-unet"))
    print(f"seg_unet with crop padding, 2 processes vs 1: max |weight difference| = {gap:.3g}")
    assert gap < WEIGHT_TOL


@pytest.mark.slow
def test_a_torchvision_model_unfrozen_midway_trains_alike_on_two_processes(data_root, tmp_path):
    """ResNet-18 (untrained weights), layer4 and fc trained from epoch 2 (train.unfreeze_after), batch norm over the
    global batch: DDP is wrapped again when the trainable selection changes, frozen batch norm stays frozen."""
    resnet = [
        "model.pretrained=none",
        "data.input_size=32",
        "data.train_subset=400",
        "data.test_subset=100",
        "data.val_fraction=0.2",
        "train.epochs=2",
        "train.unfreeze_after=1",
        "train.sync_bn=true",
        *SGD,
    ]
    done = torchrun(STANDALONE, ["run", "resnet18-transfer-cifar10", *resnet, "--runs-dir", str(tmp_path / "spread")])
    assert done.returncode == 0, done.stderr
    assert "epoch 2: 15 parameter tensors train from now on" in done.stdout
    gap = weight_gap(
        only_run(tmp_path / "spread"), one_process(tmp_path / "alone", resnet, "resnet18-transfer-cifar10")
    )
    print(f"resnet18 unfrozen after epoch 1, sync_bn, 2 processes vs 1: max |weight difference| = {gap:.3g}")
    assert gap < BN_TOL


@pytest.mark.slow
def test_a_batch_size_that_does_not_divide_stops_every_process_before_any_folder(tmp_path):
    done = torchrun(STANDALONE, ["run", "quickstart", *TABLE1, "train.batch_size=47", "--runs-dir", str(tmp_path)])
    assert done.returncode != 0
    assert "train.batch_size 47 is the global batch and must divide evenly among the 2 processes" in done.stderr
    assert not list(tmp_path.rglob("config.yaml"))


def loopback_only() -> list[str]:
    """A command prefix that runs in a network namespace of its own with only the loopback interface, up (no
    network configured), where this machine allows one (unprivileged user namespaces); else nothing."""
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True)
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"'] if probe.returncode == 0 else []


@pytest.mark.slow
def test_two_machines_make_one_run_folder_over_loopback(data_root, tmp_path):
    """Two torchrun launches, one process each, as two machines would start them, rendezvous on 127.0.0.1; each
    "machine" has runs dir of its own, and the one run folder is on rank 0's."""
    port, prefix = free_port(), loopback_only()
    launches = [
        f"{sys.executable} -m torch.distributed.run --nnodes=2 --node-rank={node} --nproc-per-node=1 "
        f"--rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:{port} -m cnnlab run quickstart {' '.join(TABLE1)} "
        f"train.epochs=1 --runs-dir {tmp_path / f'machine{node}'} > {tmp_path / f'machine{node}.log'} 2>&1 & "
        f"p{node}=$!"
        for node in (0, 1)
    ]
    script = "; ".join(launches) + "; wait $p0; a=$?; wait $p1; exit $((a | $?))"
    done = subprocess.run([*prefix, "bash", "-c", script], env=env(), timeout=300)
    logs = "\n".join((tmp_path / f"machine{n}.log").read_text() for n in (0, 1))
    assert done.returncode == 0, logs
    run = only_run(tmp_path / "machine0") if (tmp_path / "machine0").exists() else only_run(tmp_path / "machine1")
    assert sum((tmp_path / f"machine{n}").exists() for n in (0, 1)) == 1  # the other machine wrote nothing
    spread = run.summary().to_dict()["spread"]
    assert run.summary().to_dict()["status"] == "completed" and spread["world_size"] == 2
    assert [r["threads"] for r in spread["ranks"]] == [1, 1]  # one process per machine: its OMP_NUM_THREADS holds
    print("two machines:", "inside a loopback-only network namespace" if prefix else "on the host's network")


def rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the cnnlab process of `rank` in the torchrun job whose environment carries `tag`."""
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if (
            tag.encode() in environ
            and f"RANK={rank}".encode() in environ
            and b"cnnlab" in (proc / "cmdline").read_bytes()
        ):
            return int(proc.name)
    return None


@pytest.mark.slow
def test_kill_9_of_one_process_stops_the_others_and_resume_finishes_the_run(data_root, tmp_path):
    longer = [*TABLE1, "data.train_subset=5000", "train.epochs=2"]  # 4000 images: 84 global batches an epoch
    tag = f"CNNLAB_TEST_JOB={uuid.uuid4()}"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *STANDALONE,
            "-m",
            "cnnlab",
            "run",
            "quickstart",
            *longer,
            "--runs-dir",
            str(tmp_path / "killed"),
        ],
        env=env(**dict([tag.split("=")])),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run_dir = first_epoch_done(tmp_path / "killed", job, timeout=240)
    time.sleep(0.1)  # kill -9 rank 1 early in epoch 2, well before its end
    victim = rank_pid(tag, 1)
    assert run_dir is not None and victim is not None, job.communicate()[0] if job.poll() is not None else "no rank 1"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    try:
        job.wait(timeout=KILL_STOP_S)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    stopped_after = time.time() - killed_at
    output = job.stdout.read()
    print(f"the survivors were gone {stopped_after:.1f} s after kill -9 of rank 1")
    assert job.returncode != 0 and rank_pid(tag, 0) is None
    summary = RunFolder(run_dir).summary().to_dict()
    assert summary["status"] in ("failed", "stopped"), output
    assert summary["epochs_done"] == 1
    resumed = torchrun(STANDALONE, ["resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    run = RunFolder(run_dir)
    assert run.summary().to_dict()["status"] == "completed" and [r["epoch"] for r in run.metrics()] == [1, 2]
    straight = torchrun(STANDALONE, ["run", "quickstart", *longer, "--runs-dir", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr
    uninterrupted = only_run(tmp_path / "straight")  # the resumed run repeats it exactly: same draws, same sums
    assert without_timing(run.metrics()) == without_timing(uninterrupted.metrics())
    assert weight_gap(run, uninterrupted) == 0.0
