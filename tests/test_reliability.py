"""Reliability on real data and real processes (issue 9): a damaged cache or run folder is detected, one writer
per run folder, names are names, every way a run ends is recorded, full disks and bad inputs give one message.

The full-disk tests use a small tmpfs where this machine lets the test mount one (root); elsewhere they
simulate ENOSPC by patching the write (the fsync of an atomic write, the archive's extraction)."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab import config as config_mod
from cnnlab.data import load_images
from cnnlab.data.archives import extract_once, find_inside
from cnnlab.data.cache import cache_path, record_path
from cnnlab.data.sources import locate
from cnnlab.engine import checkpoint
from cnnlab.engine.trainer import Progress
from cnnlab.errors import CnnlabError
from cnnlab.metrics import TIMING_KEYS
from cnnlab.runfolder import RunFolder
from cnnlab.runner import resume_run, start_run
from tests.conftest import quick_config

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def cli(*args, env=ENV, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def cli_background(*args, env=ENV) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_message(stderr: str) -> str:
    """The CLI's one message (it may wrap on a narrow terminal, but never holds a traceback)."""
    assert "Traceback" not in stderr, stderr
    return " ".join(stderr.split())


def experiment_file(folder: Path, cfg) -> Path:
    path = folder / f"{cfg.name}.yaml"
    path.write_text(config_mod.dump(cfg))
    return path


def only_run(parent: Path) -> RunFolder:
    (path,) = [p for p in parent.iterdir() if p.is_dir()]
    return RunFolder(path)


def wait_until(condition, seconds: float = 180, proc=None) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def no_temporary_files(folder: Path) -> bool:
    return not list(folder.rglob("*.tmp"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> dict:
    """A tensor cache of the test's own (damaging the shared one would hurt other runs); the env for subprocesses."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    return {**ENV, "CNNLAB_CACHE": str(cache)}


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs mounted at tmp_path/disk, or None where this machine does not allow mounting one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Write a file that leaves `leave` bytes free on the tmpfs `disk`."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


# ---- 1, 10: a damaged tensor cache is decoded again, never trained on -----------------------------------------


def test_corrupted_and_truncated_cache_is_rebuilt_and_trains_as_before(data_root, tmp_path, own_cache, capsys):
    cfg = quick_config()
    before = start_run(cfg, tmp_path / "runs", data_root).metrics()
    (cache,) = (tmp_path / "cache" / "tensors").glob("fashion_mnist-*.pt")
    assert cache == cache_path("fashion_mnist", locate("fashion_mnist", data_root).path)
    assert json.loads(record_path(cache).read_text())["blake2b"]
    with open(cache, "r+b") as f:  # the damage: 40 MB of 0xff in the middle of the 55 MB file
        f.seek(5_000_000)
        f.write(b"\xff" * 40_000_000)
    done = cli(
        "run",
        experiment_file(tmp_path, cfg),
        "--runs-dir",
        tmp_path / "corrupt",
        "--data-dir",
        data_root,
        env=own_cache,
    )
    assert done.returncode == 0, done.stderr
    notice = [line for line in done.stderr.splitlines() if line.startswith("notice:")]
    assert len(notice) == 1 and str(cache) in notice[0] and "does not match its checksum" in notice[0]
    assert without_timing(only_run(tmp_path / "corrupt" / "test").metrics()) == without_timing(before)
    os.truncate(cache, cache.stat().st_size // 2)
    capsys.readouterr()
    after = start_run(cfg, tmp_path / "truncated", data_root).metrics()
    assert "does not match its checksum" in capsys.readouterr().err
    assert without_timing(after) == without_timing(before)
    os.utime(cache)  # a touch moves the stamp but not the bytes: verified by its checksum and used
    start_run(cfg, tmp_path / "touched", data_root)
    assert "notice" not in capsys.readouterr().err


# ---- 2, 3: an image folder edited after a run; splits that disagree on classes ------------------------------------


def cifar_jpegs(data_root: Path) -> Path:
    """The train/ folder of the real CIFAR-10 JPEGs (extracted once into the shared cache)."""
    extracted = extract_once(data_root / "cifar10-jpeg.tar.gz")
    return find_inside(extracted, lambda f: (f / "train").is_dir() and (f / "test").is_dir())


def image_folder(root: Path, jpegs: Path, classes: dict[str, list[str]], per_split: dict[str, int]) -> Path:
    for split, names in classes.items():
        for name in names:
            (root / split / name).mkdir(parents=True)
            for path in sorted((jpegs / split / name).iterdir())[: per_split[split]]:
                shutil.copy(path, root / split / name / path.name)
    return root


def test_image_folder_edited_after_a_run_is_decoded_again(data_root, tmp_path, monkeypatch, capsys):
    jpegs = cifar_jpegs(data_root)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))  # after the (shared) extraction of the JPEGs
    pets = image_folder(
        tmp_path / "pets", jpegs, {s: ["bird", "cat", "dog"] for s in ("train", "test")}, {"train": 20, "test": 5}
    )
    cfg = quick_config(
        data={"dataset": "imagefolder", "path": str(pets), "train_subset": None, "test_subset": None},
        model={"name": None, "spec": "flatten -> dense classes"},
    )
    first = start_run(cfg, tmp_path / "runs", data_root).summary().to_dict()["data"]
    assert first["train"] + first["val"] == 60 and first["test"] == 15
    for path in sorted((pets / "train" / "bird").iterdir())[:5]:
        path.unlink()
    capsys.readouterr()
    second = start_run(cfg, tmp_path / "runs", data_root).summary().to_dict()["data"]
    assert second["train"] + second["val"] == 55
    assert "earlier state of its source" in capsys.readouterr().err
    (pets / "train" / "cat" / "extra").mkdir()  # a folder deep down counts too
    shutil.copy(next((jpegs / "train" / "cat").iterdir()), pets / "train" / "cat" / "extra" / "x.jpg")
    assert "notice" not in capsys.readouterr().err
    load_images(config_mod.validate(cfg.model_dump(mode="json"), "test").data, data_root)
    assert "earlier state of its source" in capsys.readouterr().err


def test_splits_with_different_classes_are_refused_naming_both(data_root, tmp_path):
    jpegs = cifar_jpegs(data_root)
    pets = image_folder(
        tmp_path / "pets", jpegs, {"train": ["bird", "cat"], "test": ["bird", "dog"]}, {"train": 3, "test": 3}
    )
    data_cfg = quick_config(data={"dataset": "imagefolder", "path": str(pets)}).data
    with pytest.raises(CnnlabError, match=r"train/ has the classes \['bird', 'cat'\] but test/ has \['bird', 'dog'\]"):
        load_images(data_cfg, data_root)


# ---- 4: one writer per run folder; a sweep worker with a foreign storage ------------------------------------------


def stop_after_epoch(n: int):
    def hook(row):
        if row["epoch"] == n:
            raise KeyboardInterrupt

    return hook


@pytest.mark.slow
def test_two_resumes_of_one_folder_one_is_refused(data_root, tmp_path):
    cfg = quick_config(train={"epochs": 200})
    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, tmp_path, data_root, Progress(epoch_end=stop_after_epoch(1)))
    run = only_run(tmp_path / "test")
    first = cli_background("resume", run.path, "--data-dir", data_root)
    wait_until(
        lambda: f"process {first.pid} " in (run.lock_path.read_text() if run.lock_path.exists() else ""), proc=first
    )
    second = cli("resume", run.path, "--data-dir", data_root)
    assert second.returncode == 2
    message = one_message(second.stderr)
    assert f"{run.path} is being trained by process {first.pid}" in message
    wait_until(lambda: len(run.metrics()) >= 3, proc=first)
    first.send_signal(signal.SIGINT)  # Ctrl-C: stops at a safe point and says how to resume
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130
    assert "stopped by SIGINT" in one_message(err) and f"resume with: cnnlab resume {run.path}" in one_message(err)
    summary = run.summary().to_dict()
    assert summary["status"] == "stopped" and summary["stopped_by"] == "SIGINT" and summary["epochs_done"] >= 3


def tiny_sweep_experiment(tmp_path: Path) -> Path:
    raw = {
        "data": {"dataset": "fashion_mnist", "train_subset": 300, "test_subset": 100, "val_fraction": 0.2},
        "model": {"name": "simplenn"},
        "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 256},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_worker_with_a_foreign_storage_is_refused_before_it_touches_a_run(data_root, tmp_path):
    import optuna

    exp = tiny_sweep_experiment(tmp_path)
    done = cli("sweep", exp, "--seeds", "1", "--data-dir", data_root, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / done.stdout.strip().splitlines()[-1]
    identity = json.loads((folder / "sweep.json").read_text())["identity"]
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")
    assert study.user_attrs["cnnlab:sweep-id"] == identity
    before = snapshot(folder)
    foreign = f"sqlite:///{tmp_path / 'study.db'}"  # the typo: the sweep folder left out of the path
    refused = cli("sweep", exp, "--seeds", "1", "--worker", "--storage", foreign, "--data-dir", data_root, cwd=tmp_path)
    assert refused.returncode == 2
    assert f"the storage holds no sweep named {folder.name}" in one_message(refused.stderr)
    worker = subprocess.run(
        [sys.executable, "-m", "cnnlab.sweep_process", str(folder)],
        capture_output=True,
        text=True,
        env={**ENV, "CNNLAB_SWEEP_STORAGE": foreign},
        timeout=120,
    )
    assert worker.returncode == 2 and "holds no sweep named" in worker.stderr
    assert snapshot(folder) == before
    assert optuna.get_all_study_names(foreign) == []


# ---- 5: names are names ---------------------------------------------------------------------------------------------


def test_experiment_and_sweep_names_are_not_paths(tmp_path):
    from cnnlab.experiment_files import load_experiment
    from cnnlab.sweep.grid import define

    for name in ("../escaped", "/elsewhere/absname", "..", "a/b", ".hidden"):
        with pytest.raises(CnnlabError, match="key 'name': a name is one folder name: letters, digits"):
            quick_config(name=name)
    path = tmp_path / "escape.yaml"
    path.write_text(yaml.safe_dump({"name": "../../escaped", "model": {"name": "simplenn"}}))
    with pytest.raises(CnnlabError, match=r"escape.yaml:\n  key 'name': a name is one folder name"):
        load_experiment(str(path))
    path.write_text(yaml.safe_dump({"model": {"name": "simplenn"}}))
    with pytest.raises(CnnlabError, match=r"--name \.\.: a name is one folder name"):
        define(str(path), [], [], 1, None, name="..")
    assert define(str(path), [], [], 1, None, name="ok-1.2").name == "ok-1.2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["escape.yaml"]


# ---- 6: SIGTERM mid-epoch --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_mid_epoch_records_stopped_and_resumes_bit_identical(data_root, tmp_path):
    overrides = [
        "deterministic=true",
        "train.epochs=3",
        "data.train_subset=8000",
        "data.test_subset=200",
        "data.val_fraction=0.2",
        "train.batch_size=64",
        "model.dropout=0.3",
        "data.augment.crop_padding=2",
    ]
    proc = cli_background("run", "quickstart", *overrides, "--runs-dir", tmp_path / "stopped", "--data-dir", data_root)

    def metrics():
        return list((tmp_path / "stopped").glob("quickstart/*/metrics.jsonl"))

    wait_until(lambda: metrics() and metrics()[0].read_text().count("\n") >= 1, proc=proc)
    time.sleep(0.1)  # into epoch 2's training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    run = RunFolder(metrics()[0].parent)
    summary = run.summary().to_dict()
    assert proc.returncode == 143, err
    assert (summary["status"], summary["stopped_by"], summary["epochs_done"]) == ("stopped", "SIGTERM", 1)
    assert f"resume with: {summary['resume']}" in one_message(err)
    assert no_temporary_files(run.path) and checkpoint.load(run.last_path)["state"]["epoch"] == 1
    command = shlex.split(summary["resume"])
    assert command[:3] == ["cnnlab", "resume", str(run.path.resolve())]
    resumed = cli(*command[1:])
    assert resumed.returncode == 0, resumed.stderr
    straight = cli("run", "quickstart", *overrides, "--runs-dir", tmp_path / "straight", "--data-dir", data_root)
    assert straight.returncode == 0, straight.stderr
    other = RunFolder(Path(straight.stdout.strip().splitlines()[-1]))
    assert run.summary().to_dict()["status"] == "completed"
    assert without_timing(run.metrics()) == without_timing(other.metrics())
    for name in ("last", "best"):
        a, b = (
            checkpoint.load(run.checkpoints / f"{name}.pt")["model"],
            checkpoint.load(other.checkpoints / f"{name}.pt")["model"],
        )
        assert all(torch.equal(a[k], b[k]) for k in a)


# ---- 7: any other error records failed; values that cannot work are refused before the run ---------------------------


def test_an_unexpected_error_records_failed_with_error_log(data_root, tmp_path, monkeypatch, capsys):
    from cnnlab import cli as cli_mod

    def crash(row):
        if row["epoch"] == 1:
            raise ZeroDivisionError("division by zero")

    with pytest.raises(CnnlabError) as caught:
        start_run(quick_config(train={"epochs": 2}), tmp_path, data_root, Progress(epoch_end=crash))
    run = only_run(tmp_path / "test")
    summary = run.summary().to_dict()
    assert (summary["status"], summary["failure"], summary["epochs_done"]) == ("failed", "error", 1)
    assert summary["error"] == "ZeroDivisionError: division by zero"
    assert "Traceback" in run.error_log.read_text() and "crash" in run.error_log.read_text()
    assert f"traceback is in {run.error_log}" in str(caught.value) and "cnnlab resume" in str(caught.value)
    assert (run.path / "report.html").exists()
    # the command line prints that as one message (exit 2), and --debug shows the traceback
    import cnnlab.runner as runner_mod

    monkeypatch.setattr(runner_mod, "_fit", lambda *a: crash({"epoch": 1}))
    monkeypatch.setattr(sys, "argv", ["cnnlab", "resume", str(run.path), "--data-dir", str(data_root)])
    with pytest.raises(SystemExit) as exit_:
        cli_mod.main()
    assert exit_.value.code == 2 and "ZeroDivisionError: division by zero" in one_message(capsys.readouterr().err)
    monkeypatch.setattr(sys, "argv", ["cnnlab", "--debug", "resume", str(run.path), "--data-dir", str(data_root)])
    with pytest.raises(CnnlabError) as debug:
        cli_mod.main()
    assert isinstance(debug.value.__cause__, ZeroDivisionError)
    monkeypatch.undo()
    assert resume_run(run.path, data_root).summary().to_dict()["status"] == "completed"


def test_seed_out_of_range_and_a_subset_too_small_are_refused_before_the_run(data_root, tmp_path):
    with pytest.raises(CnnlabError, match="key 'seed': Input should be less than or equal to 4294967295"):
        quick_config(seed=1000000000000000)
    with pytest.raises(CnnlabError, match="key 'data.split_seed'"):
        quick_config(data={"split_seed": 2**40})
    with pytest.raises(CnnlabError, match="the training split is empty: data.val_fraction=0.95 of 20 images"):
        start_run(quick_config(data={"train_subset": 20, "val_fraction": 0.95}), tmp_path, data_root)
    assert not any(tmp_path.iterdir())


# ---- 8: a kill between the last checkpoint and the report ----------------------------------------------------------


KILL_AT_LAST_EPOCH = """
import os, signal, sys
from pathlib import Path
from cnnlab.engine.trainer import Progress
from cnnlab.runner import start_run
from tests.conftest import quick_config

def die(row):  # called after the epoch's last.pt, metrics and summary are written, before the report
    if row["epoch"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)

start_run(quick_config(train={"epochs": 2}), Path(sys.argv[1]), Path(sys.argv[2]), Progress(epoch_end=die))
"""


@pytest.mark.slow
def test_kill_between_the_last_checkpoint_and_the_report_then_resume_writes_it(data_root, tmp_path):
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_LAST_EPOCH, str(tmp_path), str(data_root)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = only_run(tmp_path / "test")
    assert run.summary().to_dict()["status"] == "running" and not (run.path / "report.html").exists()
    done = cli("resume", run.path, "--data-dir", data_root)
    assert done.returncode == 0, done.stderr
    assert run.summary().to_dict()["status"] == "completed" and (run.path / "report.html").exists()
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    (run.path / "report.html").unlink()  # a completed run without its report: resume writes it
    done = cli("resume", run.path, "--data-dir", data_root)
    assert done.returncode == 0 and "completed without its report; writing it" in done.stdout
    assert (run.path / "report.html").exists() and no_temporary_files(run.path)


# ---- 9: a full disk --------------------------------------------------------------------------------------------------


def test_full_disk_while_writing_a_checkpoint_fails_the_run_in_one_line(data_root, tmp_path, small_disk, monkeypatch):
    disk = small_disk or tmp_path / "simulated"
    filler = []

    def fill_after_epoch_1(row):
        if row["epoch"] == 1:
            if small_disk is not None:
                filler.append(fill(small_disk, leave=64 * 1024))  # room for summary.json, not for best.pt
            else:  # simulated: an atomic write of more than 64 KB meets a full disk at its fsync
                real_fsync = os.fsync

                def fsync_on_a_full_disk(fd):
                    if os.fstat(fd).st_size > 64 * 1024:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    real_fsync(fd)

                monkeypatch.setattr(os, "fsync", fsync_on_a_full_disk)

    with pytest.raises(CnnlabError) as caught:
        start_run(quick_config(train={"epochs": 3}), disk / "runs", data_root, Progress(epoch_end=fill_after_epoch_1))
    message = str(caught.value)
    assert re.search(r"^no space left on the disk that holds \S+/checkpoints while writing (best|last)\.pt;", message)
    assert "\n" not in message and "recorded as failed after epoch 1" in message
    run = only_run(disk / "runs" / "test")
    summary = run.summary().to_dict()
    assert (summary["status"], summary["failure"], summary["epochs_done"]) == ("failed", "error", 1)
    assert checkpoint.load(run.last_path)["state"]["epoch"] == 1 and no_temporary_files(run.path)
    for f in filler:
        f.unlink()
    monkeypatch.undo()
    assert resume_run(run.path, data_root).summary().to_dict()["status"] == "completed"
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]


def test_full_disk_while_extracting_names_the_folder_and_keeps_nothing(data_root, tmp_path, small_disk, monkeypatch):
    cache = (small_disk or tmp_path) / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    if small_disk is None:  # simulated: the extraction meets a full disk after its first files
        import cnnlab.data.archives as archives

        def unpack(archive, folder):
            (folder / "first.jpg").write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(archives, "_unpack", unpack)
    with pytest.raises(CnnlabError) as caught:
        load_images(quick_config(data={"dataset": "cifar10"}).data, data_root)
    assert str(caught.value).startswith(
        f"no space left on the disk that holds {cache / 'extracted'} while writing "
        f"the files of {data_root / 'cifar10-jpeg.tar.gz'} (none were kept)"
    )
    assert list((cache / "extracted").iterdir()) == []


def test_an_archive_changed_on_disk_is_extracted_again_and_its_old_extraction_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    archives = []
    for place in ("a", "b"):  # two archives of the same name in two folders: two datasets
        (tmp_path / place / "pics" / "cat").mkdir(parents=True)
        (tmp_path / place / "pics" / "cat" / "1.png").write_bytes(b"png")
        with tarfile.open(tmp_path / place / "pics.tar.gz", "w:gz") as t:
            t.add(tmp_path / place / "pics", arcname="pics")
        archives.append(tmp_path / place / "pics.tar.gz")
    first, other = extract_once(archives[0]), extract_once(archives[1])
    assert first != other and extract_once(archives[0]) == first  # once
    os.utime(archives[0], ns=(0, archives[0].stat().st_mtime_ns + 10**9))  # the archive was replaced
    again = extract_once(archives[0])
    assert again != first and (again / "pics" / "cat" / "1.png").read_bytes() == b"png"
    assert sorted((tmp_path / "cache" / "extracted").iterdir()) == sorted([again, other])  # the stale copy is gone


def test_truncated_archive_is_named_and_leaves_nothing(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    whole = (data_root / "cifar10-jpeg.tar.gz").read_bytes()
    (tmp_path / "data" / "cifar10-jpeg.tar.gz").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(CnnlabError, match="cifar10-jpeg.tar.gz: .*the archive is corrupt or truncated, get it again"):
        load_images(quick_config(data={"dataset": "cifar10"}).data, tmp_path / "data")
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []


# ---- 11, 12: inputs and run folders that cannot be used: one message each --------------------------------------------


def test_non_utf8_experiment_file_is_one_message(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\nmodel: {name: simplenn}\n".encode("latin-1"))
    done = cli("run", path, "--runs-dir", tmp_path / "runs")
    assert done.returncode == 2
    assert f"config file {path} is not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8" in one_message(done.stderr)


@pytest.fixture
def stopped_run(data_root, tmp_path) -> RunFolder:
    with pytest.raises(KeyboardInterrupt):
        start_run(
            quick_config(train={"epochs": 2}), tmp_path / "runs", data_root, Progress(epoch_end=stop_after_epoch(1))
        )
    return only_run(tmp_path / "runs" / "test")


def test_a_last_pt_that_cannot_continue_the_run_is_refused_in_one_line(data_root, stopped_run):
    import datetime

    run = stopped_run
    last = run.last_path.read_bytes()
    shutil.copy(run.best_path, run.last_path)
    with pytest.raises(CnnlabError, match=r"last.pt is a best.pt \(one epoch's weights\): it lacks optimizer, state"):
        resume_run(run.path, data_root)
    torch.save({"model": {}, "when": datetime.datetime(2026, 1, 1)}, run.last_path)
    with pytest.raises(CnnlabError) as caught:
        resume_run(run.path, data_root)
    assert "holds code (datetime.datetime) and was not loaded" in str(caught.value) and "\n" not in str(caught.value)
    assert "weights_only" not in str(caught.value)
    run.last_path.write_bytes(last)
    raw = yaml.safe_load(run.config_path.read_text())
    run.config_path.write_text(yaml.safe_dump({**raw, "model": {**raw["model"], "name": "table1"}}))
    with pytest.raises(
        CnnlabError,
        match=r"config.yaml differs from the config its checkpoint .* was trained with "
        r"\(model.name: 'simplenn' in last.pt, 'table1' in config.yaml\)",
    ):
        resume_run(run.path, data_root)
    run.config_path.write_text(yaml.safe_dump(raw))
    assert run.summary().to_dict()["status"] == "stopped"  # a refused resume leaves the run as it was
    assert resume_run(run.path, data_root).summary().to_dict()["status"] == "completed"


@pytest.mark.parametrize("damage", ["summary", "metrics"])
def test_damaged_summary_or_metrics_one_message_and_resume_rewrites_them(
    data_root, tmp_path, damage, capsys, monkeypatch
):
    from cnnlab import cli as cli_mod

    run = start_run(quick_config(train={"epochs": 2}), tmp_path, data_root)
    rows = run.metrics()
    if damage == "summary":
        run.summary_path.write_bytes(run.summary_path.read_bytes()[:200])
    else:
        run.metrics_path.write_text(run.metrics_path.read_text().replace('"epoch": 2', '"epoch": 2,,'))
    path = run.summary_path if damage == "summary" else run.metrics_path
    monkeypatch.setattr(sys, "argv", ["cnnlab", "report", str(run.path)])
    with pytest.raises(SystemExit) as exit_:
        cli_mod.main()
    message = one_message(capsys.readouterr().err)
    assert exit_.value.code == 2 and f"{path} is damaged" in message
    assert f"`cnnlab resume {run.path}` writes it again from checkpoints/last.pt" in message
    messages = []
    resume_run(run.path, data_root, Progress(message=messages.append))
    assert messages[0].startswith(f"notice: {path} is damaged (") and messages[0].endswith(
        "writing it again from checkpoints/last.pt"
    )
    assert run.summary().to_dict()["status"] == "completed" and without_timing(run.metrics()) == without_timing(rows)


# ---- 13: NaN in epoch 1, temporary files, file modes ----------------------------------------------------------------


def test_nan_in_epoch_1_claims_no_checkpoint(data_root, tmp_path):
    with pytest.raises(CnnlabError, match="NaN or infinite in epoch 1; the run stopped and has no checkpoint"):
        start_run(quick_config(optim={"name": "sgd", "lr": 1e12}), tmp_path, data_root)
    run = only_run(tmp_path / "test")
    assert run.summary().to_dict()["status"] == "failed" and run.summary().to_dict()["failure"] == "diverged"
    assert not run.last_path.exists()


def test_files_follow_the_umask_and_no_temporary_files_stay(data_root, tmp_path, stopped_run):
    (stopped_run.checkpoints / ".last.pt.dead0001.tmp").write_bytes(b"left by a kill -9")
    (stopped_run.path / ".metrics.jsonl.dead0002.tmp").write_text("{")
    resume_run(stopped_run.path, data_root)
    assert no_temporary_files(stopped_run.path)
    for umask, file_mode, dir_mode in ((0o027, 0o640, 0o750), (0o002, 0o664, 0o775)):
        old = os.umask(umask)
        try:
            run = start_run(quick_config(name=f"umask{umask:o}"), tmp_path / "modes", data_root)
        finally:
            os.umask(old)
        files = [p for p in run.path.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {
            "config.yaml",
            "summary.json",
            "metrics.jsonl",
            "best.pt",
            "last.pt",
            "report.html",
        }
        assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(file_mode)}
        assert {oct(p.stat().st_mode & 0o777) for p in run.path.rglob("*") if p.is_dir()} == {oct(dir_mode)}
        assert no_temporary_files(run.path)
