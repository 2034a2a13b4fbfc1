"""The example notebook (issue 18.4), executed on a real IPython kernel with nbclient as a student would run it:
counts that equal torch's own, a completed run, a comparison, cnnlab's figure and the student's own `plt.plot`
shown inline, and the kernel's matplotlib backend left as it was."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "homework.ipynb"


def kernel_here(folder: Path) -> str:
    """A kernelspec for this very Python (so a fresh clone needs no `ipykernel install`, and a python3 kernel
    registered elsewhere on the machine is not the one run); its name."""
    spec = folder / "kernels" / "cnnlab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "cnnlab test",
                "language": "python",
            }
        )
    )
    return "cnnlab-test"


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def cell_with(nb, source: str):
    return next(c for c in nb.cells if c.cell_type == "code" and source in c.source)


def test_example_notebook_runs_on_a_real_kernel(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CNNLAB_DATA", str(data_root))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own default (inline) is what must stay
    kernel = kernel_here(tmp_path / "jupyter")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(work)}}).execute()

    counted = dict(line.split(" ", 1) for line in text_of(cell_with(nb, "FlopCounterMode")).splitlines())
    for key in ("params", "macs"):
        ours, torchs = counted[key].split()
        assert int(ours) == int(torchs) > 0, key
    assert any("text/html" in o.get("data", {}) for o in cell_with(nb, "cnnlab.summary(").outputs)
    trained = cell_with(nb, "run = cnnlab.run(")
    assert "epoch 1/1" in text_of(trained)  # the epoch's line, and the line that followed its steps
    steps = [o["data"]["text/plain"] for o in trained.outputs if "text/plain" in o.get("data", {})]
    assert any(text.startswith("epoch 1/1: step") for text in steps), steps
    assert any("text/html" in o.get("data", {}) for o in cell_with(nb, "cnnlab.compare(").outputs)
    for source in ("run.figure('loss')", "plt.plot("):
        assert any("image/png" in o.get("data", {}) for o in cell_with(nb, source).outputs), source
    last = dict(line.split(" ", 1) for line in text_of(nb.cells[-1]).splitlines())
    before, after = last["backend"].split()
    assert before == after and "inline" in before
    assert last["status"] == "completed completed"
    runs = list((work / "runs" / "quickstart").iterdir())
    assert len(runs) == 2
    for run in runs:  # the class written in a cell: recorded by its name in the kernel and its source
        assert "name: __main__:Net" in (run / "config.yaml").read_text()
        assert "def forward(self, x):" in (run / "model_source.py").read_text()
