"""The spec language and builder: parameter counts checked against arithmetic written out by hand."""

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import ModelOptions, build
from cnnlab.models.spec import evaluate, names_in, parse_spec
from cnnlab.models.zoo import ZOO


def count(net):
    return sum(p.numel() for p in net.parameters())


def make(spec, shape, values=None, **opts):
    return build(parse_spec(spec), shape, {"classes": 10, **(values or {})}, ModelOptions(**opts))


def test_table1_parameters_by_hand():
    net = make(ZOO["table1"].spec, (3, 32, 32), bn=False)
    conv1 = 5 * 5 * 3 * 32 + 32
    conv2 = 5 * 5 * 32 * 64 + 64
    conv3 = 5 * 5 * 64 * 128 + 128
    dense1 = 128 * 4 * 4 * 64 + 64  # 32 -> 16 -> 8 -> 4 after three 2x2 pools
    dense2 = 64 * 10 + 10
    assert count(net) == conv1 + conv2 + conv3 + dense1 + dense2 == 390410


def test_simplenn_parameters_by_hand():
    net = make(ZOO["simplenn"].spec, (3, 32, 32), bn=True)
    conv1 = 5 * 5 * 3 * 8 + 8
    bn1 = 2 * 8  # scale and shift; running statistics are buffers, not parameters
    conv2 = 3 * 3 * 8 * 16 + 16
    bn2 = 2 * 16
    fc1 = 16 * 6 * 6 * 120 + 120  # 32 -conv5-> 28 -pool-> 14 -conv3-> 12 -pool-> 6
    fc2 = 120 * 84 + 84
    fc3 = 84 * 10 + 10
    assert count(net) == conv1 + bn1 + conv2 + bn2 + fc1 + fc2 + fc3
    buffers = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    assert buffers == 2 * 8 + 2 * 16  # running mean and variance per channel


def test_net28_reaches_dense_with_512_features():
    net = make(ZOO["net28"].spec, (3, 28, 28), {"classes": 53}, activation="elu")
    flatten = [s for s in net.steps if s.layer.kind == "flatten"][0]
    assert flatten.out_shape == (32 * 4 * 4,) == (512,)
    assert net.dense1.in_features == 512 and net.dense1.out_features == 53
    assert isinstance(net.elu1, torch.nn.ELU)
    assert net(torch.zeros(2, 3, 28, 28)).shape == (2, 53)


def test_options_bn_position_activation_dropout():
    spec = "conv 4 k3 p1 -> bn -> act -> flatten -> dropout -> dense classes"
    after = make(spec, (1, 8, 8), bn_position="after", activation="silu", dropout=0.3)
    kinds = [type(m).__name__ for m in after.children()]
    assert kinds == ["Conv2d", "SiLU", "BatchNorm2d", "Flatten", "Dropout", "Linear"]
    plain = make(spec, (1, 8, 8), bn=False, dropout=0.0)
    assert [type(m).__name__ for m in plain.children()] == ["Conv2d", "ReLU", "Flatten", "Linear"]


def test_expressions_and_skips():
    spec = "conv NF k=k p=k//2 -> save a -> conv 2*NF k=k p=k//2 -> cat a -> conv NC k1"
    layers = parse_spec(spec)
    assert names_in(layers) == {"NF", "NC", "k"}
    net = build(layers, (1, 16, 16), {"NF": 4, "NC": 3, "k": 5}, ModelOptions())
    assert net.conv3.in_channels == 2 * 4 + 4  # concatenation adds the saved channels
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    assert evaluate("2*NF+1", {"NF": 8}) == 17


def test_residual_add_runs():
    net = make("conv 8 k3 p1 -> save r -> conv 8 k3 p1 -> act -> add r -> gap -> dense classes", (3, 8, 8))
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    "spec, shape, fragment",
    [
        ("conv 8 k7", (1, 5, 5), "floor((5 - 7 + 2*0)/1) + 1"),
        (
            "conv 8 k3 -> flatten -> dense 10 in=100",
            (1, 6, 6),
            "expects 100 input features but the layer before gives 128",
        ),
        ("conv 8 k3 p1 -> save a -> maxpool 2 -> cat a", (1, 8, 8), "the skip 'a' has shape (8, 8, 8)"),
        ("conv 8 k3 -> dense 10", (1, 6, 6), "add 'flatten'"),
        ("conv 8 kk3", (1, 6, 6), "cannot read"),
        ("pool 2", (1, 6, 6), "unknown layer kind 'pool'"),
        ("conv NF k3", (1, 6, 6), "the name 'NF' has no value"),
        ("conv 8 k3 -> cat nowhere", (1, 6, 6), "nothing was saved as 'nowhere'"),
        ("conv __import__('os') k3", (1, 6, 6), "may use only names"),
    ],
)
def test_misfits_name_the_layer(spec, shape, fragment):
    with pytest.raises(CnnlabError) as e:
        make(spec, shape)
    assert fragment in str(e.value)
    assert "layer " in str(e.value)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_runs(name):
    entry = ZOO[name]
    net = build(parse_spec(entry.spec), entry.input, entry.hyper, entry.options)
    out = net(torch.randn(2, *entry.input))
    outputs = entry.hyper.get("NC", entry.hyper["classes"])  # colourization nets name their outputs NC
    per_pixel = out.dim() == 4
    assert out.shape[:2] == (2, outputs) and torch.isfinite(out).all()
    assert not per_pixel or out.shape[2:] == entry.input[1:]  # dense nets answer at every input pixel
