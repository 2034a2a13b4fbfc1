"""Issue 19, the second round of attacks: each test fails on main 55dd85f."""

from __future__ import annotations

import base64
from pathlib import Path
import re
import subprocess
import sys

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.runner import start_run
from tests.conftest import quick_config


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True, timeout=600, **kw
    )


def one_message(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return " ".join(stderr.split())


@pytest.fixture(scope="module")
def done_run(data_root, tmp_path_factory) -> RunFolder:
    """One completed quick run (its figures drawn) that tests copy before they damage it."""
    return start_run(quick_config(), tmp_path_factory.mktemp("runs"), data_root)


def own_copy(run: RunFolder, tmp_path) -> RunFolder:
    import shutil

    return RunFolder(shutil.copytree(run.path, tmp_path / "test" / run.path.name))


# ---- 4: figures are written whole, and a report redraws a damaged one ------------------------------------------


def test_a_killed_figure_write_leaves_the_old_figure_and_a_report_redraws_an_empty_one(done_run, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from cnnlab.report.run_report import write_run_report
    from cnnlab.viz.figure import is_whole_png, write_png

    run = own_copy(done_run, tmp_path)
    picture = run.path / run.summary().figures[0]["file"]
    before = picture.read_bytes()

    def killed(self, f, **kw):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    fig = plt.figure()
    with monkeypatch.context() as m:
        m.setattr(type(fig), "savefig", killed)
        with pytest.raises(KeyboardInterrupt):
            write_png(fig, picture)
    assert picture.read_bytes() == before and not list(run.path.rglob("*.tmp"))
    picture.write_bytes(b"")  # what an older cnnlab killed mid-savefig left
    html = write_run_report(run.path)["html"].read_text()
    assert is_whole_png(picture)
    embedded = re.findall(r'src="data:image/png;base64,([^"]*)"', html)
    assert embedded and all(is_whole_png_bytes(base64.b64decode(d)) for d in embedded)


def is_whole_png_bytes(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


# ---- 11, 13: impossible optimiser values, NaN anywhere, and aliases of aliases -----------------------------------


@pytest.mark.parametrize(
    "override, named",
    [
        ("optim.betas=[2,3]", "key 'optim.betas.0': Input should be less than 1 (got 2)"),
        ("optim.betas=[.nan,0.9]", "key 'optim.betas.0': Input should be a finite number"),
        ("data.affine_a=.nan", "key 'data.affine_a': Input should be a finite number"),
        ("optim.lr=.inf", "key 'optim.lr': Input should be a finite number"),
    ],
)
def test_impossible_betas_and_nan_are_refused_naming_the_key(override, named):
    from cnnlab.experiment_files import load_experiment

    with pytest.raises(CnnlabError, match=re.escape(named)):
        load_experiment("quickstart", [override])


LAUGHS = "[" + ", ".join(["*a1"] * 10) + "]"


@pytest.mark.parametrize("key", ["train: {targets: ", "data: {classes: "])
def test_aliases_that_expand_beyond_a_bound_are_refused_at_once(tmp_path, key):
    import time

    from cnnlab.experiment_files import load_experiment

    levels = "&a1 [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]"
    for i in range(2, 10):  # nine levels of ten: a billion values once expanded
        levels = f"&a{i} [{levels}" + f", *a{i - 1}" * 9 + "]"
    path = tmp_path / "laughs.yaml"
    path.write_text(f"name: laughs\n{key}{levels}}}\n")
    start = time.perf_counter()
    with pytest.raises(CnnlabError, match="aliases .* expand it to more than 100,000 values") as caught:
        load_experiment(str(path))
    assert time.perf_counter() - start < 5 and len(str(caught.value)) < 400
    path.write_text("name: itself\ndata:\n  classes: &c [a, *c]\n")
    with pytest.raises(CnnlabError, match="or into itself"):
        load_experiment(str(path))


def test_a_long_wrong_value_is_shown_short():
    from cnnlab.experiment_files import load_experiment

    with pytest.raises(CnnlabError) as caught:
        load_experiment("quickstart", ["train.targets=[" + ",".join(["2"] * 50_000) + "]"])
    assert "got [2.0, 2.0" in str(caught.value) and len(str(caught.value)) < 600


# ---- 2: resume refuses a section switched on or off --------------------------------------------------------------


@pytest.mark.parametrize("started, edited", [({"lookahead": {"every": 5}}, {}), ({}, {"lookahead": {"every": 5}})])
def test_resume_refuses_a_section_switched_off_or_on(tmp_path, started, edited):
    from cnnlab.engine.checkpoint import check_resumable

    saved = {
        "model": {},
        "optimizer": {},
        "state": {},
        "config": quick_config(optim={"lookahead": None, **started}).model_dump(mode="json"),
    }
    now = quick_config(optim={"lookahead": None, **edited}).model_dump(mode="json")
    shown = r"\(optim.lookahead: (None in last.pt, on|on in last.pt, None) in config.yaml\)"
    with pytest.raises(CnnlabError, match=shown):
        check_resumable(saved, tmp_path / "last.pt", now)
    check_resumable({**saved, "config": now}, tmp_path / "last.pt", now)  # the same config continues
    older = {k: v for k, v in now.items() if k != "figures"}  # a run started before a key existed continues
    check_resumable({**saved, "config": older}, tmp_path / "last.pt", now)


# ---- 9, 14: a read-only folder, a CSV into a folder that does not exist -------------------------------------------


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """`cnnlab ARGS` in this process (no start-up cost): its exit code and its one message."""
    from cnnlab import cli as cli_mod

    monkeypatch.setattr(sys, "argv", ["cnnlab", *map(str, args)])
    try:
        cli_mod.main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, one_message(capsys.readouterr().err)


@pytest.fixture
def read_only(tmp_path):
    """(a writable folder, the same folder mounted read-only), or the folder made read-only where mounting is not
    allowed (chmod does not stop root, so root without mounts skips)."""
    import os

    source, mount = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    yield source, mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    for folder, _, _ in os.walk(source):
        os.chmod(folder, 0o755)


def make_read_only(source, mount):
    import os

    done = subprocess.run(
        f"mount --bind {source} {mount} && mount -o remount,bind,ro {mount}", shell=True, capture_output=True
    )
    if done.returncode == 0:
        return mount
    if os.geteuid() == 0:
        pytest.skip("root cannot mount a read-only folder here")
    for folder, _, _ in os.walk(source):
        os.chmod(folder, 0o555)
    return source


def test_every_command_on_a_read_only_folder_is_one_message(
    done_run, read_only, data_root, tmp_path, monkeypatch, capsys
):
    import shutil

    from cnnlab import config as config_mod

    source, mount = read_only
    shutil.copytree(done_run.path, source / "test" / done_run.path.name)
    experiment = tmp_path / "test.yaml"
    experiment.write_text(config_mod.dump(quick_config()))
    folder = make_read_only(source, mount)
    run = folder / "test" / done_run.path.name
    data = ["--data-dir", data_root]
    for args in (
        ["run", experiment, "--runs-dir", folder, *data],
        ["report", run],
        ["resume", run, *data],
        ["explain", run, *data],
        ["compare", run, "--out", folder / "cmp"],
        ["sweep", experiment, "--grid", "optim.lr=0.1,0.2", "--sweeps-dir", folder, *data],
    ):
        code, message = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and f"cannot write {folder}" in message and "is read-only" in message, (args, message)


def test_summary_csv_into_a_missing_folder_is_one_message(tmp_path, monkeypatch, capsys):
    code, message = run_cli(monkeypatch, capsys, "summary", "simplenn", "--csv", tmp_path / "nowhere" / "x.csv")
    assert code == 2 and f"the folder {tmp_path / 'nowhere'} does not exist" in message
    assert not (tmp_path / "nowhere").exists()
    code, _ = run_cli(monkeypatch, capsys, "summary", "simplenn", "--csv", tmp_path / "x.csv")
    assert code == 0 and (tmp_path / "x.csv").read_text().count("\n") > 2


# ---- 10: sizes and expressions in a spec are checked where the spec is read ------------------------------------


TERMS = "+".join(["1"] * 30_000)


@pytest.mark.parametrize(
    "spec, args, named",
    [
        ("conv 1e9 -> flatten -> dense 10", [], "out is 1e+09; it must be a whole number from 1 to 65,536"),
        ("conv 8 -> flatten -> dense -1", [], "layer 3 'dense -1': out is -1; it must be a whole number from 1"),
        ("conv 0 -> flatten -> dense 10", [], "layer 1 'conv 0': out is 0"),
        ("conv 8 k0 -> flatten -> dense 10", [], "k is 0"),
        ("conv NF -> flatten -> dense 10", ["NF=0"], "layer 1 'conv NF': out is 0"),
        ("conv 1//0 -> flatten -> dense 10", [], "'1//0' divides by zero"),
        (f"conv {TERMS} -> flatten -> dense 10", [], "an expression of 59,999 characters; write at most 200"),
        ("conv ((NF -> flatten -> dense 10", ["--symbolic"], "'((NF' is not a number or an expression like 2*NF"),
    ],
)
def test_impossible_spec_values_are_one_short_message(monkeypatch, capsys, spec, args, named):
    code, message = run_cli(monkeypatch, capsys, "summary", spec, *args, "--input", "1x28x28")
    assert code == 2 and named in message and len(message) < 600, message


# ---- 1: every report escapes what users named, and runs no script ----------------------------------------------


TAGS = {"path": 1, "classA": 2, "classB": 3, "comment": 4, "grid": 5, "image": 6, "X": 7}


def hostile(field: str) -> str:
    """A name that, shown unescaped, runs a script which changes the page's title to a number naming `field`."""
    return f"<img src=x onerror=document.title={TAGS[field]}>"


def hostile_folder(root, rng) -> "Path":
    """An image folder whose folder name and both class folder names are hostile: train and test, 8x8 colour PNGs."""
    from PIL import Image

    folder = root / hostile("path")
    for split, count in (("train", 12), ("test", 6)):
        for c, name in enumerate((hostile("classA"), hostile("classB"))):
            (folder / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = (rng.random((8, 8, 3)) * 100 + 120 * c).astype("uint8")
                Image.fromarray(pixels).save(folder / split / name / f"{i}.png")
    return folder


def title_after_scripts(page, tmp_path) -> str:
    """The <title> of `page` once headless chromium has loaded it and run whatever scripts it would."""
    import os

    profile = tmp_path / f"chromium-{os.urandom(4).hex()}"
    done = subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=2000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"<title>(.*?)</title>", done.stdout, re.S)
    assert found, done.stderr[-2000:]
    return found.group(1)


@pytest.mark.slow  # six short trainings (a sweep of two among them) and five pages in chromium
def test_every_report_shows_hostile_names_as_text_and_runs_no_script(data_root, tmp_path, monkeypatch, capsys):
    import html

    import numpy as np

    from cnnlab import config as config_mod
    from cnnlab.report.explain_report import write_explain
    from cnnlab.runner import run_invariance

    folder = hostile_folder(tmp_path / "data", np.random.default_rng(0))
    spec = f"conv 4 k3 p1 -> act\n# {hostile('comment')}\nflatten -> dense classes"
    raw = {
        "name": "hostile",
        "data": {"dataset": "imagefolder", "path": str(folder), "val_fraction": 0.25},
        "model": {"spec": spec},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16},
    }
    cfg = config_mod.validate(raw, "hostile test")
    run = start_run(cfg, tmp_path / "runs", data_root)
    image = tmp_path / f"{hostile('image')}.png"
    (folder / "test" / hostile("classA") / "0.png").rename(image)
    moved = cfg.model_copy(update={"data": cfg.data.model_copy(update={"affine_a": 2.0})})
    pages = [
        run.path / "report.html",
        write_explain(run.path, data_root, image=image),
        run_invariance(moved, tmp_path / "runs", data_root) / "report.html",
    ]
    experiment = tmp_path / "hostile.yaml"
    experiment.write_text(config_mod.dump(cfg))
    other = spec.replace("conv 4", "conv 2").replace(hostile("comment"), hostile("grid"))
    grid = "model.spec=" + ",".join(f'"{s}"' for s in (spec, other)).replace("\n", " -> ")
    code, message = run_cli(
        monkeypatch,
        capsys,
        "sweep",
        experiment,
        "--grid",
        grid,
        "--workers",
        "1",
        "--seeds",
        "1",
        "--sweeps-dir",
        tmp_path / "sweeps",
        "--data-dir",
        data_root,
    )
    assert code == 0, message
    sweep = next((tmp_path / "sweeps").iterdir())
    assert run_cli(monkeypatch, capsys, "compare", *(sweep / "runs").glob("*/*"), "--out", tmp_path / "cmp")[0] == 0
    pages += [tmp_path / "cmp" / "report.html", sweep / "report.html"]
    shown = []
    for page in pages:
        text = page.read_text()
        assert "<img src=x" not in text and "Content-Security-Policy" in text, page
        shown += [page] if "onerror=document" in html.unescape(text) else []
        expected = re.search(r"<title>(.*?)</title>", text, re.S).group(1)
        assert title_after_scripts(page, tmp_path) == expected, page
    assert len(shown) == 4  # the names are shown, as text, in all but the invariance report, which names none


# ---- 3: a class-balanced subset that a small class cannot fill is refused; the counts used are recorded ------------


def test_a_subset_a_small_class_cannot_fill_is_refused_and_the_counts_used_are_recorded(data_root, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, sizes in (("train", {"many": 100, "few": 5}), ("test", {"many": 10, "few": 10})):
        for name, count in sizes.items():
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = dict(
        data={
            "dataset": "imagefolder",
            "path": str(tmp_path / "pets"),
            "train_subset": 40,
            "test_subset": None,
            "val_fraction": 0.2,
        },
        model={"name": None, "spec": "flatten -> dense classes"},
    )
    with pytest.raises(
        CnnlabError,
        match="data.train_subset=40 takes up to 20 images of each of 2 classes, but class "
        "'few' has only 5; ask for at most 10",
    ):
        start_run(quick_config(**cfg), tmp_path / "runs", data_root)
    cfg["data"]["train_subset"] = 10
    run = start_run(quick_config(**cfg), tmp_path / "runs", data_root)
    assert run.summary().data["per_class"] == {
        "train": {"few": 4, "many": 4},
        "val": {"few": 1, "many": 1},
        "test": {"few": 10, "many": 10},
    }


# ---- 5, 6: a damaged peaks.json is measured again; a failure whose recording fails still marks the run ------------


@pytest.mark.parametrize(
    "damage",
    [
        "[1, 2]",
        '"a string"',
        "0",
        '{"KEY": [1]}',
        '{"KEY": {"gflops": "fast"}}',
        '{"KEY": {"gflops": NaN, "size": 8, "measured": "x", "busy": false}}',
    ],
)
def test_a_damaged_peaks_file_is_measured_again(tmp_path, monkeypatch, damage):
    import json

    import torch

    from cnnlab.engine import peak

    monkeypatch.setattr(peak, "matmul_peak_gflops", lambda *a, **k: 123.0)  # measuring is not what is tested
    key = peak.peak_key(torch.device("cpu"), "fp32")
    (tmp_path / peak.PEAKS_FILE).write_text(damage.replace("KEY", key))
    assert peak.machine_peak(torch.device("cpu"), "fp32", tmp_path)["gflops"] == 123.0
    assert json.loads((tmp_path / peak.PEAKS_FILE).read_text())[key]["gflops"] == 123.0


def test_a_run_with_a_damaged_peaks_file_completes(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "peaks.json").write_text("[1, 2]")
    assert start_run(quick_config(), tmp_path / "runs", data_root).summary().status == "completed"


def test_a_failure_whose_recording_fails_is_still_marked_failed(data_root, tmp_path, monkeypatch):
    import cnnlab.runner as runner_mod
    from cnnlab.engine.trainer import Progress

    def crash(row):
        raise ZeroDivisionError("division by zero")

    def out_of_memory(*args):
        raise MemoryError

    monkeypatch.setattr(runner_mod, "_failed", out_of_memory)
    with pytest.raises(
        CnnlabError,
        match="division by zero; and recording the failure in .* failed too: MemoryError; it is marked failed",
    ):
        start_run(quick_config(train={"epochs": 2}), tmp_path, data_root, Progress(epoch_end=crash))
    (path,) = (tmp_path / "test").iterdir()
    marked = RunFolder(path).summary()
    assert (marked.name, marked.status, marked.failure, marked.epochs_done) == ("test", "failed", "error", 1)
    assert marked.error == "recording the failure failed"


# ---- 12: an image too large to decode, and work of terabytes, are refused with the figure -------------------------


def bomb_png(path) -> "Path":
    """The header of a 20000x20000 PNG: Pillow refuses it as a decompression bomb before it reads any pixel."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_in_a_folder_or_given_to_explain_is_named(
    done_run, data_root, tmp_path, monkeypatch, capsys
):
    from cnnlab.data.decoders import read_image_folder

    for split in ("train", "test"):
        (tmp_path / "pets" / split / "cat").mkdir(parents=True)
    bomb = bomb_png(tmp_path / "pets" / "train" / "cat" / "big.png")
    with pytest.raises(CnnlabError, match=f"cannot decode image {re.escape(str(bomb))}: Image size .* decompression"):
        read_image_folder(tmp_path / "pets")
    code, message = run_cli(
        monkeypatch, capsys, "explain", own_copy(done_run, tmp_path).path, "--image", bomb, "--data-dir", data_root
    )
    assert code == 2 and f"cannot decode image {bomb}" in message


@pytest.mark.parametrize(
    "args, named",
    [
        (
            ["summary", "simplenn", "--input", "3x100000x100000"],
            "the model's parameters and buffers: 4,469.6 GiB needed",
        ),
        (
            ["cost", "finetune", "simplenn", "--batch-size", "100000000"],
            "one training step (whole) at batch size 100,000,000: 10,006.1 GiB needed, more than the",
        ),
    ],
)
def test_work_beyond_the_machines_memory_is_refused_with_the_figure(monkeypatch, capsys, args, named):
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and named in message, message


# ---- 15: extractions in use, leftovers of killed writers, unsafe members, one class, a FIFO -----------------------


def pics_archive(folder, content: bytes = b"png") -> "Path":
    import tarfile

    (folder / "pics" / "cat").mkdir(parents=True, exist_ok=True)
    (folder / "pics" / "cat" / "1.png").write_bytes(content)
    with tarfile.open(folder / "pics.tar.gz", "w:gz") as t:
        t.add(folder / "pics", arcname="pics")
    return folder / "pics.tar.gz"


def test_an_extraction_being_read_is_not_removed_and_leftovers_of_killed_writers_are(tmp_path, monkeypatch):
    import os

    from cnnlab.data.archives import extract_once, extracted
    from cnnlab.data.cache import write_cache

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    archive = pics_archive(tmp_path)
    with extracted(archive) as reading:  # process A decodes from it...
        os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))  # ...while the archive is replaced
        newer = extract_once(archive)  # and process B extracts the new state
        assert newer != reading and (reading / "pics" / "cat" / "1.png").read_bytes() == b"png"
    killed = tmp_path / "cache" / "extracted" / ".pics-x.0123abcd.tmp"  # an extraction killed mid-way
    (killed / "pics").mkdir(parents=True)
    os.utime(killed, (0, 0))
    assert extract_once(archive) == newer and sorted((tmp_path / "cache" / "extracted").iterdir()) == [newer]
    tensors = tmp_path / "cache" / "tensors"
    tensors.mkdir()
    (tensors / ".x.pt.0123abcd.tmp").write_bytes(b"half a cache")  # a cache write killed mid-way
    (tensors / ".y.pt.0123abcd.tmp").write_bytes(b"a live write")
    os.utime(tensors / ".x.pt.0123abcd.tmp", (0, 0))
    write_cache(tensors / "z.pt", {"a": 1}, "sources", tmp_path)
    assert sorted(p.name for p in tensors.iterdir()) == [".y.pt.0123abcd.tmp", "z.json", "z.pt"]


def test_an_unsafe_archive_member_is_refused_as_unsafe(tmp_path, monkeypatch):
    import io
    import tarfile

    from cnnlab.data.archives import extract_once

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as t:
        member = tarfile.TarInfo("../outside.png")
        member.size = 3
        t.addfile(member, io.BytesIO(b"png"))
    with pytest.raises(CnnlabError, match=r"refused to extract .*evil.tar.gz: its member '../outside.png' is unsafe"):
        extract_once(tmp_path / "evil.tar.gz")
    assert not (tmp_path / "cache" / "outside.png").exists()


def test_one_class_is_refused_and_a_fifo_is_skipped_by_name(data_root, tmp_path, capsys):
    import os

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "cat").mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pets" / split / "cat" / f"{i}.png")
    os.mkfifo(tmp_path / "pets" / "train" / "cat" / "x.png")  # reading it would wait for a writer for ever
    cfg = dict(
        data={"dataset": "imagefolder", "path": str(tmp_path / "pets"), "train_subset": None, "test_subset": None},
        model={"name": None, "spec": "flatten -> dense classes"},
    )
    with pytest.raises(CnnlabError, match="holds one class \\(cat\\); a classifier needs at least two"):
        start_run(quick_config(**cfg), tmp_path / "runs", data_root)
    assert "skipping 1 image name(s) that are no regular file" in capsys.readouterr().err


# ---- 8: a PostgreSQL server that restarts, or stops, under a sweep's storage ------------------------------------


@pytest.fixture
def own_postgres(tmp_path):
    """A server of this test's own, which it may stop and start: (url, start, stop)."""
    import shutil
    import tempfile

    from tests import postgres_server as pg

    bindir = pg.server_bin()
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-own-"))
    prefix = pg.as_server_user(folder)
    data, port = folder / "data", pg.free_port()
    pg._run(prefix, [str(bindir / "initdb"), "-D", str(data), "-U", "cnnlab", "--auth=trust", "--no-sync"])
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start():
        pg._run(
            prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"]
        )

    start()
    try:
        yield f"postgresql://cnnlab@127.0.0.1:{port}/postgres", start, lambda: pg.stop(data)
    finally:
        pg.stop(data)
        shutil.rmtree(folder, ignore_errors=True)


def test_storage_survives_a_restart_and_a_stopped_server_is_one_message(own_postgres, monkeypatch):
    import threading
    import time

    from optuna.study import StudyDirection

    from cnnlab.sweep import storage as storage_mod

    url, start, stop = own_postgres
    storage = storage_mod.open_storage(url)
    study = storage.create_new_study([StudyDirection.MINIMIZE], "s")
    stop()  # a restart: every pooled connection dies with the server, which is back 3 s later
    restart = threading.Timer(3, start)
    restart.start()
    storage.set_study_user_attr(study, "after", "restart")
    restart.join()
    assert storage.get_study_user_attrs(study) == {"after": "restart"}
    monkeypatch.setattr(storage_mod, "RETRY_S", 2.0)
    stop()
    begun = time.monotonic()
    with pytest.raises(
        CnnlabError,
        match=r"the sweep's storage postgresql://cnnlab@127.0.0.1:\d+/postgres stopped "
        r"answering for 2 s \(.*\); nothing is lost: .* run the same `cnnlab sweep`",
    ):
        storage.get_study_user_attrs(study)
    assert time.monotonic() - begun < 10


def test_a_read_only_sweep_storage_is_not_waited_for(read_only, monkeypatch, capsys):
    import time

    from optuna.study import StudyDirection

    from cnnlab.sweep.storage import open_storage

    source, mount = read_only
    (source / "lr").mkdir()  # the sweep's folder, there before: the study is what cannot be written
    open_storage(f"sqlite:///{source / 'study.db'}").create_new_study([StudyDirection.MINIMIZE], "s")
    folder = make_read_only(source, mount)
    begun = time.monotonic()
    code, message = run_cli(
        monkeypatch,
        capsys,
        "sweep",
        "quickstart",
        "--grid",
        "optim.lr=0.1,0.2",
        "--name",
        "lr",
        "--storage",
        f"sqlite:///{folder / 'study.db'}",
        "--sweeps-dir",
        folder,
    )
    assert code == 2 and time.monotonic() - begun < 15, message
    assert "cannot write the sweep's SQLite storage: it is read-only" in message


def test_resuming_a_run_whose_lookahead_was_switched_off_is_refused(data_root, tmp_path):
    import yaml

    from cnnlab.engine.trainer import Progress
    from cnnlab.errors import Stopped
    from cnnlab.runner import resume_run

    def stop(row):
        raise KeyboardInterrupt

    cfg = quick_config(optim={"lookahead": {"every": 5}}, train={"epochs": 2})
    with pytest.raises(Stopped):
        start_run(cfg, tmp_path, data_root, Progress(epoch_end=stop))
    (path,) = (tmp_path / "test").iterdir()
    raw = yaml.safe_load((path / "config.yaml").read_text())
    raw["optim"]["lookahead"] = None  # what gave another result, with exit code 0
    (path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(CnnlabError, match=r"\(optim.lookahead: on in last.pt, None in config.yaml\)"):
        resume_run(path, data_root)
