"""Affine input transforms y = a*x + b through conv then batch norm: invariant for a > 0, mirrored for a < 0.

Conditions for exactness, each checked: no zero padding in front of the first batch norm (padding
is not transformed with the input); batch norm's eps, which is not scaled by a (so exact as eps -> 0,
and close for a of order 1 at the default eps); in eval mode, running statistics that hold the data's
statistics rather than their (0, 1) start (cumulative averaging, or enough updates).
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn


def conv_bn(seed: int, eps: float = 1e-5, momentum=0.1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8, eps=eps, momentum=momentum),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
        nn.BatchNorm2d(4, eps=eps, momentum=momentum),
    ).double()


def inputs(seed: int) -> torch.Tensor:
    return torch.randn(16, 3, 10, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.05, 20), b=st.floats(-5, 5), seed=st.integers(0, 1000))
def test_positive_a_is_invisible_in_train_and_eval_mode(a, b, seed):
    x = inputs(seed)
    plain, moved = conv_bn(seed, eps=1e-12, momentum=None), conv_bn(seed, eps=1e-12, momentum=None)
    assert torch.allclose(plain(x), moved(a * x + b), atol=1e-8)  # train mode: batch statistics absorb a and b
    plain.eval(), moved.eval()  # eval mode: running statistics, each estimated from its own inputs
    assert torch.allclose(plain(x), moved(a * x + b), atol=1e-8)


@pytest.mark.parametrize("a, b", [(0.5, -3.0), (2.0, 4.0), (10.0, 1.0)])
def test_positive_a_at_default_eps_is_close(a, b):
    x = inputs(1)
    plain, moved = conv_bn(1), conv_bn(1)
    assert (plain(x) - moved(a * x + b)).abs().max() < 1e-3


def test_padding_breaks_exact_invariance():
    torch.manual_seed(0)
    padded = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=1e-12)).double()
    x = inputs(2)
    assert (padded(x) - padded(2.0 * x + 3.0)).abs().max() > 1e-2


@pytest.mark.parametrize("a", [-0.5, -2.0])
def test_negative_a_mirrors_the_first_normalised_layer(a):
    x = inputs(3)
    plain, moved = conv_bn(0, eps=1e-12), conv_bn(0, eps=1e-12)
    first = lambda net: net[1](net[0](x if net is plain else a * x + 1.0))  # noqa: E731
    # before the activation, conv + BN output is exactly negated (BN's shift beta is 0 at init)
    assert torch.allclose(first(moved), -first(plain), atol=1e-8)
    # after the ReLU the network sees other features: its outputs differ
    assert (plain(x) - moved(a * x + 1.0)).abs().max() > 0.1


@pytest.mark.slow
def test_invariance_command_compares_two_real_runs(data_root, tmp_path, monkeypatch):
    import json
    import re
    from pathlib import Path

    from cnnlab.experiment_files import load_experiment
    from cnnlab.errors import CnnlabError
    from cnnlab.runner import run_invariance

    cfg = load_experiment(
        "affine-invariance", ["train.epochs=1", "data.train_subset=200", "data.test_subset=40", "model.args.NF=8"]
    )
    monkeypatch.chdir(tmp_path)
    runs = Path("runs")  # relative, as `cnnlab invariance` has it by default
    folder = run_invariance(cfg, runs, data_root)
    comparison = json.loads((folder / "comparison.json").read_text())
    assert (comparison["affine_a"], comparison["affine_b"]) == (2.5, -1.0)
    plain, moved = (
        json.loads((runs / f"affine-invariance-{k}").glob("*/summary.json").__next__().read_text())
        for k in ("plain", "affine")
    )
    assert plain["status"] == moved["status"] == "completed"
    # one epoch of batch statistics absorbs a and b: the training loss barely moves
    assert comparison["curves"]["train_loss"]["max_abs_diff"] < 0.02 * plain["final"]["train_loss"]
    assert comparison["outputs"]["test_outputs"] == 40 and 0 <= comparison["outputs"]["prediction_agreement"] <= 1
    html = (folder / "report.html").read_text()
    assert "a=2.5, b=-1" in html and html.count("data:image/svg+xml;base64,") == 2
    assert comparison["path"]["absorbed_by"] == ["bn1"] and "bn1 removes a and b" in html
    links = re.findall(r'href="([^"]*report.html)"', html)  # relative: the folders can move together
    assert len(links) == 2 and all((folder / link).is_file() for link in links), links
    with pytest.raises(CnnlabError, match="no input transform"):
        run_invariance(load_experiment("colour-cnn"), tmp_path, data_root)


def built(name: str) -> nn.Module:
    from cnnlab.experiment_files import load_experiment
    from cnnlab.models import create_model

    cfg = load_experiment("affine-invariance", [f"model.name={name}", "model.args.NF=8"])
    return create_model(cfg.model, (1, 32, 32), 24)


def measured(path: dict, a: float = 2.5) -> dict:
    return {"affine_a": a, "path": path, "curves": {"train_loss": {"max_abs_diff": 0.023}}}


def test_invariance_verdict_comes_from_the_network():
    """colour_cnn: every path meets a batch norm; colour_unet's last convolution sees the raw input through cat."""
    from cnnlab.analysis.affine import trace_affine
    from cnnlab.report.invariance import verdict

    x = torch.randn(4, 1, 32, 32)
    cnn, unet = (trace_affine(built(name), x).record() for name in ("colour_cnn", "colour_unet"))
    assert cnn["output"] is None and cnn["absorbed_by"] == ["bn1"]
    assert [s["layer"] for s in cnn["seen_by"]] == ["conv1", "maxpool1", "bn1"] and cnn["padded"] == ["conv1"]
    assert unet["output"] == "affine" and unet["to_output"][-2:] == ["cat3", "conv6"]
    assert {"layer": "conv6", "type": "Conv2d", "input": "raw"} in unet["seen_by"]
    said_cnn, said_unet = (" ".join(verdict(measured(p))) for p in (cnn, unet))
    assert "bn1 removes a and b" in said_cnn and "zero padding in conv1" in said_cnn
    assert "without a batch norm" in said_unet and "conv6 sees a and b" in said_unet and "0.023" in said_unet
    assert "removes a and b" not in said_unet and "bn1 removes it on the other paths" in said_unet
    assert "negated" in " ".join(verdict(measured(cnn, a=-1.0)))


def test_a_nonlinearity_before_batch_norm_is_not_absorbed():
    from cnnlab.analysis.affine import trace_affine

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    path = trace_affine(net, torch.randn(2, 1, 8, 8))
    assert path.output == "mixed" and path.absorbed_by == [] and path.to_output == ["0", "1", "2", "3"]
