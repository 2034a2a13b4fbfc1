"""The Python API (issue 18.2): `import cnnlab` offers the jobs, results are objects that show in a notebook, a class
from Python is counted and trained like a zoo network, errors raise CnnlabError with the CLI's message, and
nothing touches matplotlib's backend or pyplot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import matplotlib
import matplotlib.pyplot
import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from tests.conftest import QUICK_OVERRIDES
from tests.own_net import Net

QUICK = QUICK_OVERRIDES


class Other(Net):
    pass


def test_import_is_cheap_and_lists_the_jobs():
    code = "import sys, cnnlab; print(sorted(dir(cnnlab)), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("summary", "run", "load", "compare", "explain", "CnnlabError"):
        assert name in out.stdout
    assert out.stdout.strip().endswith("False")  # torch is imported on first use
    from cnnlab.errors import CnnlabError
    from cnnlab.explain.layer_listing import (
        list_layers,
    )  # the package of explain's parts stays importable, and callable

    assert cnnlab.CnnlabError is CnnlabError and callable(list_layers) and callable(cnnlab.explain)


def test_summary_of_a_class_counts_exactly_and_shows_as_a_table():
    backend, figures = matplotlib.get_backend(), matplotlib.pyplot.get_fignums()
    counts = cnnlab.summary(Net, input=(1, 28, 28), classes=7, width=8)
    net = Net(1, 7, 8)
    with FlopCounterMode(display=False) as flops:
        net(torch.zeros(1, 1, 28, 28))
    assert counts.params == sum(p.numel() for p in net.parameters())
    assert counts.macs == flops.get_total_flops() // 2
    assert [r["name"] for r in counts.rows][:2] == ["conv1", "bn"] and len(counts.to_pandas()) == len(counts.rows)
    assert "<table>" in counts._repr_html_() and counts.to_csv().startswith("layer,type")
    assert "tabular" in counts.to_latex() and counts.to_dict()["total"]["params"] == counts.params
    assert cnnlab.summary(net, input="1x28x28").params == counts.params  # an instance, counted as it is
    assert cnnlab.summary("simplenn").params == cnnlab.summary("simplenn", input=(3, 32, 32)).params
    assert (matplotlib.get_backend(), matplotlib.pyplot.get_fignums()) == (backend, figures)


def test_user_errors_raise_cnnlab_error_with_the_command_lines_message(tmp_path):
    with pytest.raises(
        cnnlab.CnnlabError, match=r"unknown key 'optim.lrr' \(did you mean lr or lr_per\?\); allowed here"
    ):
        cnnlab.run("quickstart", "optim.lrr=0.1", runs_dir=tmp_path)
    with pytest.raises(cnnlab.CnnlabError, match=r"error in the config given to cnnlab:\n  unknown key 'optim.lrr'"):
        cnnlab.run({"model": {"name": "simplenn"}, "optim": {"lrr": 0.1}}, runs_dir=tmp_path)
    with pytest.raises(cnnlab.CnnlabError, match=r"returns .2, 3. for an input of .2, 1, 28, 28.; the task needs"):
        cnnlab.run("quickstart", *QUICK, "model.args.classes=3", model=Net, runs_dir=tmp_path)
    with pytest.raises(cnnlab.CnnlabError, match="give the input size"):
        cnnlab.summary(Net)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_run_a_class_from_python_stop_resume_compare_and_explain(tmp_path, data_root, monkeypatch, capsys):
    from cnnlab import api

    backend, figures = matplotlib.get_backend(), matplotlib.pyplot.get_fignums()
    original = api.LineProgress.epoch_end

    def stop_after_first(self, row):  # as a SIGTERM (or Ctrl-C) after epoch 1 would
        original(self, row)
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(api.LineProgress, "epoch_end", stop_after_first)
    with pytest.raises(KeyboardInterrupt, match="resume with"):
        cnnlab.run("quickstart", *QUICK, "train.epochs=2", model=Net, runs_dir=tmp_path, data_dir=data_root)
    monkeypatch.setattr(api.LineProgress, "epoch_end", original)
    stopped = cnnlab.load(next((tmp_path / "quickstart").iterdir()))
    assert stopped.status == "stopped" and stopped.config["model"]["name"] == "tests.own_net:Net"
    with pytest.raises(cnnlab.CnnlabError, match=f"trained with tests.own_net:Net; model={__name__}:Other is another"):
        cnnlab.resume(stopped.path, model=Other, data_dir=data_root)
    run = cnnlab.resume(stopped.path, model=Net, data_dir=data_root)
    assert "epoch 2/2" in capsys.readouterr().out
    assert run.status == "completed" and [r["epoch"] for r in run.metrics] == [1, 2]
    assert list(run.metrics.to_pandas()["epoch"]) == [1, 2] and "completed" in run._repr_html_()
    assert isinstance(run.figure("acc"), Figure) and set(run.figures) >= {"loss", "acc"}
    assert "srcdoc" in run.report()._repr_html_()
    assert "class Net(nn.Module):" in (run.path / "model_source.py").read_text()
    wide = cnnlab.run(
        "quickstart", *QUICK, "model.args.width=8", model=Net, runs_dir=tmp_path, data_dir=data_root, progress=False
    )
    comparison = cnnlab.compare([run, wide])
    assert len(comparison.variants) == 2 and "<table>" in comparison._repr_html_()
    assert isinstance(comparison.figure(), Figure)
    explained = cnnlab.explain(run, data_dir=data_root)
    assert {"filters", "gradcam"} <= set(explained.images) and all(p.exists() for p in explained.images.values())
    assert (matplotlib.get_backend(), matplotlib.pyplot.get_fignums()) == (backend, figures)
