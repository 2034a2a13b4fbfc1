"""Issue 19, the second round of attacks: each test fails on main 55dd85f."""
from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import RunFolder
from cnnlab.runner import start_run
from tests.conftest import quick_config


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


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
    picture = run.path / run.summary()["figures"][0]["file"]
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
    html = write_run_report(run.path).read_text()
    assert is_whole_png(picture)
    embedded = re.findall(r'src="data:image/png;base64,([^"]*)"', html)
    assert embedded and all(is_whole_png_bytes(base64.b64decode(d)) for d in embedded)


def is_whole_png_bytes(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
