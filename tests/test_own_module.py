"""The user's own nn.Module wherever a model is named (issue 18.1): `file.py:Name` and `package.module:Name`,
with a class these tests write themselves (functional ops in forward, batch norm without affine, a `classes`
argument), counted exactly, trained into a completed run with its report and explain figures, resumed after a
kill -9 bit-identically, and refused in one message when its file is broken or has changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.engine import checkpoint
from cnnlab.metrics import TIMING_KEYS
from cnnlab.runfolder import RunFolder
from tests import own_net
from tests.conftest import QUICK_OVERRIDES, first_epoch_done

NET = Path(own_net.__file__).read_text()  # the class as the user's own file


def line_of(text: str) -> int:
    """The line of the user's file that begins (after its indent) with `text`, as a message names it."""
    return next(n for n, line in enumerate(NET.splitlines(), 1) if line.strip().startswith(text))


QUICK = [*QUICK_OVERRIDES, "model.args.width=4"]


def cnnlab(*args, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_message(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return " ".join(result.stderr.split())


def net_module(folder: Path, text: str = NET) -> dict:
    """The class as the user's file and again as a package module; the namespace it defines."""
    (folder / "mynet.py").write_text(text)
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "nets.py").write_text(text)
    namespace: dict = {}
    exec(compile(text, str(folder / "mynet.py"), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", ["mynet.py:Net", "pkg.nets:Net", "mynet.py:make_net"])
def test_own_module_is_counted_exactly(tmp_path, name):
    Net = net_module(tmp_path)["Net"]
    result = cnnlab(
        "summary",
        name,
        "--input",
        "1x28x28",
        "classes=7",
        "width=4",
        "--format",
        "json",
        "--no-measure",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == 0, result.stderr
    total = json.loads(result.stdout)["total"]
    net = Net(1, 7, 4)
    with FlopCounterMode(display=False) as flops:
        net(torch.zeros(1, 1, 28, 28))
    assert total["params"] == sum(p.numel() for p in net.parameters())
    assert total["macs"] == flops.get_total_flops() // 2
    assert total["buffers"] == 2 * 4  # affine=False: running mean and variance, no scale or shift


def test_layers_cost_and_spec_only_options(tmp_path):
    net_module(tmp_path)
    layers = cnnlab("layers", "mynet.py:Net", "--input", "1x28x28", "--format", "json", cwd=tmp_path)
    assert layers.returncode == 0, layers.stderr
    listing = json.loads(layers.stdout)
    assert (listing["first"], listing["last"]) == ("conv1", "conv2")
    cost = cnnlab(
        "cost",
        "finetune",
        "mynet.py:Net",
        "width=4",
        "--input",
        "1x28x28",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert cost.returncode == 0, cost.stderr
    for flag in (["--symbolic"], ["--scale", "2"]):
        message = one_message(cnnlab("summary", "mynet.py:Net", "--input", "1x28x28", *flag, cwd=tmp_path))
        assert f"{flag[0]} is for spec networks" in message and "your own module" in message


def test_broken_files_missing_names_and_wrong_shapes_are_one_message_naming_file_and_line(tmp_path, data_root):
    net_module(tmp_path)
    (tmp_path / "broken.py").write_text("import torch\n\nclass Net(torch.nn.Module:\n    pass\n")
    message = one_message(cnnlab("summary", "broken.py:Net", "--input", "1x28x28", cwd=tmp_path))
    assert f"{tmp_path / 'broken.py'}:3" in message and "SyntaxError" in message
    (tmp_path / "raises.py").write_text("import torch\nimport not_a_module_anywhere\n")
    message = one_message(cnnlab("summary", "raises.py:Net", "--input", "1x28x28", cwd=tmp_path))
    assert f"{tmp_path / 'raises.py'}:2" in message and "not_a_module_anywhere" in message
    message = one_message(cnnlab("summary", "mynet.py:Nett", "--input", "1x28x28", cwd=tmp_path))
    assert "mynet.py: no Nett in it; its nn.Module classes: Net" in message
    message = one_message(cnnlab("summary", "nowhere.py:Net", "--input", "1x28x28", cwd=tmp_path))
    assert "no file nowhere.py" in message
    runs = tmp_path / "runs"  # 10 classes, and an input of 3x32x32 that the net's linear layer does not fit
    message = one_message(
        cnnlab(
            "run",
            "quickstart",
            *QUICK,
            "model.name=mynet.py:Net",
            "model.args.classes=4",
            "--runs-dir",
            runs,
            "--data-dir",
            data_root,
            cwd=tmp_path,
        )
    )
    assert (
        f"{tmp_path / 'mynet.py'}:{line_of('class Net(')}" in message
        and "returns (2, 4)" in message
        and "needs (2, 10)" in message
    )
    message = one_message(
        cnnlab(
            "run",
            "table1-cifar10",
            *QUICK,
            "model.name=mynet.py:Net",
            "--runs-dir",
            runs,
            "--data-dir",
            data_root,
            cwd=tmp_path,
        )
    )
    assert (
        f"{tmp_path / 'mynet.py'}:{line_of('return self.fc(')}" in message
        and "mat1 and mat2 shapes cannot be multiplied" in message
    )
    assert not runs.exists()


@pytest.mark.slow
def test_own_module_trains_reports_explains_and_resumes_after_kill_9_bit_identically(tmp_path, data_root):
    net_module(tmp_path)
    exp = tmp_path / "exp"
    exp.mkdir()  # the file is found from the experiment's folder too
    (exp / "own.yaml").write_text(
        "data: {dataset: fashion_mnist}\nmodel: {name: ../mynet.py:Net}\noptim: {name: adam, lr: 0.003}\n"
    )
    overrides = [
        "deterministic=true",
        "train.epochs=3",
        "data.train_subset=6000",
        "data.test_subset=200",
        "data.val_fraction=0.2",
        "train.batch_size=64",
        "model.args.width=4",
        "data.augment.flip=true",
    ]
    args = ["run", exp / "own.yaml", *overrides, "--data-dir", data_root]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *map(str, args), "--runs-dir", tmp_path / "killed"],
        cwd=exp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = first_epoch_done(tmp_path / "killed", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None, proc.stdout.read()
    run = RunFolder(run_dir)
    assert run.summary().status == "running" and (run_dir / "model_source.py").read_text() == NET
    assert json.loads((run_dir / "model_source.json").read_text())["path"] == str(tmp_path / "mynet.py")
    resumed = cnnlab("resume", run_dir, "--data-dir", data_root, cwd=tmp_path / "pkg")  # from another folder
    assert resumed.returncode == 0, resumed.stderr
    straight = cnnlab(*args, "--runs-dir", tmp_path / "straight", cwd=exp)
    assert straight.returncode == 0, straight.stderr
    other = RunFolder(Path(straight.stdout.strip().splitlines()[-1]))
    assert run.summary().status == "completed" and (run_dir / "report.html").exists()

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    assert strip(run.metrics()) == strip(other.metrics())
    a, b = checkpoint.load(run.last_path)["model"], checkpoint.load(other.last_path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    explained = cnnlab("explain", run_dir, "--data-dir", data_root, cwd=tmp_path)
    assert explained.returncode == 0, explained.stderr
    assert {"filters.png", "gradcam.png", "activations-conv1.png"} <= {p.name for p in run.figures.iterdir()}
    (tmp_path / "mynet.py").write_text(NET + "\n# changed\n")
    for command in (["explain", run_dir, "--data-dir", data_root], ["report", run_dir]):
        message = one_message(cnnlab(*command, cwd=tmp_path))
        assert f"{tmp_path / 'mynet.py'} has changed since run" in message
        assert str(run_dir / "model_source.py") in message


@pytest.mark.slow
def test_sweep_over_own_module_args_and_compare(tmp_path, data_root):
    net_module(tmp_path)
    result = cnnlab(
        "sweep",
        "quickstart",
        *QUICK,
        "model.name=mynet.py:Net",
        "--grid",
        "model.args.width=2,4",
        "--seeds",
        "2",
        "--sweeps-dir",
        tmp_path / "sweeps",
        "--data-dir",
        data_root,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip().splitlines()[-1])
    words = " ".join(result.stdout.split())
    assert "model.args.width=2 is" in words and "model.args.width=4" in words  # the verdict of the pair
    compared = cnnlab("compare", folder, "--format", "json", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert all(len(column["variants"]) == 2 for column in json.loads(compared.stdout)["columns"])


@pytest.mark.slow
def test_own_module_trains_under_torchrun(tmp_path, data_root):
    net_module(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "cnnlab",
            "run",
            "quickstart",
            *QUICK,
            "train.batch_size=48",
            "model.name=mynet.py:Net",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--data-dir",
            str(data_root),
        ],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    run = RunFolder(Path(done.stdout.strip().splitlines()[-1]))
    assert (run.summary().status, run.summary().world_size) == ("completed", 2)
    assert json.loads(run.model_source_path.read_text())["path"] == str(tmp_path / "mynet.py")


def test_a_class_handed_over_from_python_is_asked_for_again():
    """A run of a class from a notebook (recorded as __main__:Name) cannot be imported by the command line."""
    from cnnlab.errors import CnnlabError
    from cnnlab.models import user

    with pytest.raises(CnnlabError, match=r"handed over from Python .*cnnlab.resume\(RUN, model=NotebookNet\)"):
        user.load("__main__:NotebookNet")


def test_a_package_module_is_found_from_the_working_directory(tmp_path, monkeypatch):
    """As `python -m` finds it, also when the `cnnlab` script (whose folder is on sys.path, not the working
    directory) runs."""
    from cnnlab.models import user

    net_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    try:
        assert user.load("pkg.nets:Net").__module__ == "pkg.nets" and str(tmp_path) not in sys.path
    finally:
        for name in ("pkg.nets", "pkg"):
            sys.modules.pop(name, None)
