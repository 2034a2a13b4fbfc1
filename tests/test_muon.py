"""optim.muon: convolution filters stepped by orthogonalised momentum (Muon), everything else by SGD exactly as
torch.optim.SGD steps it; checked on synthetic tensors and in a real CIFAR-10 run that resumes bit-identically."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from cnnlab.config import MuonConfig
from cnnlab.engine import checkpoint
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.optimizers import MuonSGD, make_optimizer, optimizer_label, orthogonalised
from cnnlab.engine.trainer import Progress
from cnnlab.runfolder import RunFolder
from cnnlab.runner import resume_run, start_run
from tests.test_engine import stop_after_epoch_1
from tests.test_speed import cifar_config

MUON = {"lr": 0.2, "momentum": 0.6, "nesterov": True, "ns_steps": 3, "normalize": True}


@pytest.mark.parametrize("shape", [(64, 576), (256, 64), (24, 24)])
def test_orthogonalised_momentum_has_every_singular_value_near_one(shape):
    n, gen = min(shape), torch.Generator().manual_seed(0)
    u, v = (torch.linalg.qr(torch.randn(rows, n, generator=gen))[0] for rows in shape)
    g = u @ torch.diag(torch.logspace(-1, 0, n)) @ v.T  # singular values spread over a factor of 10
    for steps in (3, 5):
        s = torch.linalg.svdvals(orthogonalised(g, steps).float())
        assert s.min() > 0.6 and s.max() < 1.25, (steps, s.min(), s.max())  # Muon's "roughly 0.5 to 1.5"


def muon_model():
    cfg = cifar_config(optim={"lr": 0.1, "momentum": 0.85, "nesterov": True, "weight_decay": 0.01, "muon": MUON})
    torch.manual_seed(0)
    return cfg, create_model(cfg.model, (3, 32, 32), 10)


def test_filters_go_to_muon_and_the_rest_steps_exactly_as_torch_sgd():
    cfg, model = muon_model()
    optimizer = make_optimizer(model, cfg.optim, 64)
    assert isinstance(optimizer, MuonSGD)
    filters = [g for g in optimizer.param_groups if g["muon"]]
    rest = [p for g in optimizer.param_groups if not g["muon"] for p in g["params"]]
    assert [p.dim() for g in filters for p in g["params"]] == [4, 4]
    assert filters[0]["lr_mult"] * optimizer.param_groups[1]["lr"] == pytest.approx(0.2)  # muon.lr, not optim.lr
    assert all(p.dim() < 4 for p in rest) and len(rest) == sum(p.dim() < 4 for p in model.parameters())
    twin = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    by_id = {id(p): twin[name] for name, p in model.named_parameters()}
    reference = torch.optim.SGD([by_id[id(p)] for p in rest], lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    for step in range(3):
        x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(step))
        model.zero_grad()
        F.cross_entropy(model(x), torch.arange(8)).backward()
        for p in rest:
            by_id[id(p)].grad = p.grad.clone()
        optimizer.step()
        reference.step()
    for name, p in model.named_parameters():
        if p.dim() < 4:
            assert torch.allclose(p, twin[name], rtol=1e-5, atol=1e-7), name
        else:
            assert not torch.equal(p, twin[name])


def test_filter_banks_are_renormalised_to_root_out_channels():
    _, model = muon_model()
    muon = MuonConfig(**{**MUON, "lr": 1e-6})
    optimizer = MuonSGD([{"params": [model.conv2.weight], "muon": True}], 1e-6, 0.0, False, muon)
    with torch.no_grad():
        model.conv2.weight.mul_(7.0)
    model.conv2.weight.grad = torch.randn_like(model.conv2.weight)
    optimizer.step()
    assert model.conv2.weight.norm().item() == pytest.approx(model.conv2.weight.shape[0] ** 0.5, rel=1e-3)


def test_muon_needs_sgd_for_the_rest_and_says_so():
    with pytest.raises(CnnlabError, match="optim.muon steps the parameters that are not filters with SGD"):
        cifar_config(optim={"name": "adam", "muon": MUON})
    assert "Muon" in optimizer_label(muon_model()[0].optim)


def test_a_muon_run_learns_and_resumes_bit_identically(data_root, tmp_path):
    cfg = cifar_config(
        optim={"lr": 0.5, "lr_per": 1024, "momentum": 0.85, "nesterov": True, "muon": MUON},
        schedule={"name": "onecycle", "warmup_fraction": 0.0},
        train={"epochs": 2},
        deterministic=True,
    )
    whole = start_run(cfg, tmp_path / "whole", data_root)
    rows = whole.metrics()
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["val_acc"] > 0.2
    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, tmp_path / "cut", data_root, Progress(epoch_end=stop_after_epoch_1))
    resumed = resume_run(RunFolder(next((tmp_path / "cut" / "speed").iterdir())).path, data_root)
    a, b = checkpoint.load(whole.last_path), checkpoint.load(resumed.last_path)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
