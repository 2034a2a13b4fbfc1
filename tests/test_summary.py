"""`cnnlab summary`: counts checked against hand arithmetic, torch's own totals, and the CLI's promises.

Every expected number below is worked out by hand in the test (kernel x channels x positions, ...),
never taken from the code under test.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from cnnlab.analysis.count import count, totals
from cnnlab.document import render
from cnnlab.analysis.network_summary import Options, counted_json, document, summarise, counts_record
from cnnlab.analysis.step_cost import measure_step, train_step
from cnnlab.optimizers import OPTIMIZERS
from cnnlab.analysis.whatif import WhatIf
from cnnlab.cli import app
from cnnlab.errors import CnnlabError
from cnnlab.models.recipe import from_spec, from_zoo
from cnnlab.analysis.subject import Subject, resolve

F32 = 4  # bytes per float32 value


def rows_of(spec: str, in_shape, **values):
    return count(from_spec(spec, values).build(in_shape), in_shape)


def table(rows):
    """{name: (output_shape, weights, biases, params, trainable, buffers, macs, bias_adds, activation_bytes)}"""
    return {
        r.name: (
            r.output_shape,
            r.weights,
            r.biases,
            r.params,
            r.trainable_params,
            r.buffers,
            r.macs,
            r.bias_adds,
            r.activation_bytes,
        )
        for r in rows
    }


def test_plain_cnn_by_hand():
    rows = rows_of("conv 4 k3 p1 -> bn -> relu -> maxpool 2 -> flatten -> dense 10", (2, 8, 8))
    conv_w = 4 * 2 * 3 * 3  # Cout * Cin * k * k = 72
    expected = {
        # columns: output, weights, biases, params, trainable, buffers, MACs, bias adds, activation bytes
        "conv1": ([4, 8, 8], conv_w, 4, conv_w + 4, conv_w + 4, 0, conv_w * 8 * 8, 4 * 8 * 8, F32 * 4 * 8 * 8),
        "bn1": ([4, 8, 8], 4, 4, 8, 8, 4 + 4, 0, 0, F32 * 4 * 8 * 8),  # gamma, beta; running mean, var
        "relu1": ([4, 8, 8], 0, 0, 0, 0, 0, 0, 0, F32 * 4 * 8 * 8),
        "maxpool1": ([4, 4, 4], 0, 0, 0, 0, 0, 0, 0, F32 * 4 * 4 * 4),  # pooling has no connections
        "flatten1": ([64], 0, 0, 0, 0, 0, 0, 0, 0),  # a view: no new memory
        "dense1": ([10], 64 * 10, 10, 64 * 10 + 10, 650, 0, 64 * 10, 10, F32 * 10),
    }
    assert table(rows) == expected
    assert totals(rows) == {
        "weights": 72 + 4 + 640,
        "biases": 4 + 4 + 10,
        "params": 76 + 8 + 650,
        "trainable_params": 734,
        "buffers": 8,
        "macs": 72 * 64 + 640,
        "bias_adds": 256 + 10,
        "activation_bytes": 3 * 1024 + 256 + 40,
    }


def test_unet_skip_by_hand():
    rows = rows_of("save x -> conv 3 k3 p1 bias=0 -> cat x -> conv 2 k1", (1, 5, 5))
    expected = {
        "save1": ([1, 5, 5], 0, 0, 0, 0, 0, 0, 0, 0),  # remembers the tensor, allocates nothing
        "conv1": ([3, 5, 5], 3 * 1 * 9, 0, 27, 27, 0, 27 * 25, 0, F32 * 3 * 25),
        "cat1": ([4, 5, 5], 0, 0, 0, 0, 0, 0, 0, F32 * (3 + 1) * 25),  # 3 + 1 channels, counted once
        "conv2": ([2, 5, 5], 2 * 4 * 1, 2, 10, 10, 0, 8 * 25, 2 * 25, F32 * 2 * 25),
    }
    assert table(rows) == expected


def test_strided_residual_and_global_pool_by_hand():
    rows = rows_of("conv 6 k3 s2 p1 -> save r -> relu -> add r -> gap -> dense 3 bias=0", (2, 7, 7))
    h = (7 - 3 + 2 * 1) // 2 + 1  # 4
    assert h == 4
    expected = {
        "conv1": ([6, 4, 4], 6 * 2 * 9, 6, 114, 114, 0, 108 * 16, 6 * 16, F32 * 6 * 16),
        "save1": ([6, 4, 4], 0, 0, 0, 0, 0, 0, 0, 0),
        "relu1": ([6, 4, 4], 0, 0, 0, 0, 0, 0, 0, F32 * 96),
        "add1": ([6, 4, 4], 0, 0, 0, 0, 0, 0, 0, F32 * 96),
        "gap1": ([6], 0, 0, 0, 0, 0, 0, 0, F32 * 6),
        "dense1": ([3], 18, 0, 18, 18, 0, 18, 0, F32 * 3),
    }
    assert table(rows) == expected


class Branchy(nn.Module):
    """Functional operations in forward, a module run twice, a parameter of the root, a frozen layer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.proj = nn.Parameter(torch.zeros(4, 5))
        self.head = nn.Linear(5, 3)
        self.head.requires_grad_(False)

    def forward(self, x):
        y = torch.cat([self.act(self.a(x)), self.act(self.b(x))], dim=1)
        y = F.interpolate(y, scale_factor=2)
        z = y.mean(dim=(2, 3)) @ self.proj
        return self.head(z)


def test_functional_ops_repeated_module_and_frozen_parameters_by_hand():
    rows = count(Branchy(), (1, 4, 4))
    got = [
        (r.name, r.type, r.output_shape, r.params, r.trainable_params, r.macs, r.activation_bytes, r.call) for r in rows
    ]
    assert got == [
        ("a", "Conv2d", [2, 4, 4], 2 * 9 + 2, 20, 2 * 9 * 16, F32 * 32, 1),
        ("act", "ReLU", [2, 4, 4], 0, 0, 0, F32 * 32, 1),
        ("b", "Conv2d", [2, 4, 4], 2, 2, 2 * 16, F32 * 32, 1),
        ("act", "ReLU", [2, 4, 4], 0, 0, 0, F32 * 32, 2),  # run again: a second row, no parameters
        ("(model).cat", "cat", [4, 4, 4], 0, 0, 0, F32 * 64, 1),
        ("(model).upsample_nearest2d", "upsample_nearest2d", [4, 8, 8], 0, 0, 0, F32 * 256, 1),
        ("(model).mean", "mean", [4], 0, 0, 0, F32 * 4, 1),
        ("(model).mm", "mm", [5], 0, 0, 4 * 5, F32 * 5, 1),  # the matmul in forward: 4 x 5 MACs
        ("head", "Linear", [3], 5 * 3 + 3, 0, 5 * 3, F32 * 3, 1),  # frozen
        ("(model)", "Branchy (own parameters)", None, 4 * 5, 20, 0, 0, 1),
    ]
    t = totals(rows)
    assert t["params"] == sum(p.numel() for p in Branchy().parameters()) == 20 + 2 + 18 + 20
    assert t["trainable_params"] == 20 + 2 + 20


def test_torchvision_resnet18_totals_match_torch():
    model = torchvision.models.resnet18(weights=None)
    rows = count(model, (3, 224, 224))
    t = totals(rows)
    assert t["params"] == sum(p.numel() for p in model.parameters()) == 11_689_512
    assert t["buffers"] == sum(b.numel() for b in model.buffers() if b.is_floating_point())
    with FlopCounterMode(display=False) as flops:
        model(torch.zeros(1, 3, 224, 224))
    assert t["macs"] == flops.get_total_flops() // 2
    # each BasicBlock runs its ReLU twice: two rows, counted once each
    assert sum(1 for r in rows if r.name == "layer1.0.relu") == 2


@pytest.mark.parametrize(
    "model, shape",
    [
        ("table1", (3, 32, 32)),
        ("simplenn", (3, 32, 32)),
        ("net28", (3, 28, 28)),
        ("colour_cnn", (1, 32, 32)),
        ("colour_unet", (1, 32, 32)),
    ],
)
def totals_from_torch(model: nn.Module, shape) -> dict:
    """Every column's total read off the module itself and one real forward pass of one image, without the counter:
    parameters and buffers from torch, MACs from torch's FLOP counter, bias additions and new output memory from
    forward hooks on the leaf modules (the zoo's networks do all their work in leaf modules)."""
    params = dict(model.named_parameters())
    per_call = {"bias_adds": 0, "activation_bytes": 0}

    def hook(module, args, output):
        if isinstance(getattr(module, "bias", None), torch.Tensor) and not isinstance(
            module, nn.modules.batchnorm._BatchNorm
        ):
            per_call["bias_adds"] += output.numel()  # one addition per output value of a conv or dense layer with bias
        inputs = {t.untyped_storage().data_ptr() for t in args if isinstance(t, torch.Tensor)}
        if output.untyped_storage().data_ptr() not in inputs:  # a view or an in-place result takes no new memory
            per_call["activation_bytes"] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(torch.randn(1, *shape))
    for h in handles:
        h.remove()
    return {
        "weights": sum(p.numel() for n, p in params.items() if not n.endswith("bias")),
        "biases": sum(p.numel() for n, p in params.items() if n.endswith("bias")),
        "params": sum(p.numel() for p in params.values()),
        "trainable_params": sum(p.numel() for p in params.values() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers() if b.is_floating_point()),
        "macs": flops.get_total_flops() // 2,
        **per_call,
    }


@pytest.mark.parametrize(
    "model, shape",
    [
        ("table1", (3, 32, 32)),
        ("simplenn", (3, 32, 32)),
        ("net28", (3, 28, 28)),
        ("colour_cnn", (1, 32, 32)),
        ("colour_unet", (1, 32, 32)),
    ],
)
def test_every_column_sums_to_its_total(model, shape):
    data = counted_json(summarise(resolve(model), shape, Options(measure=False)).base)
    expected = totals_from_torch(from_zoo(model).build(shape), shape)
    assert all(expected[column] > 0 for column in expected if column != "buffers")  # each check below is not 0 == 0
    for column, total in expected.items():
        assert sum(row[column] for row in data["layers"]) == data["total"][column] == total, column


def test_colour_unet_wiring_by_hand():
    nf, nc, k = 2, 3, 3
    rows = {
        r.name: r
        for r in count(from_zoo("colour_unet").with_values({"NF": nf, "NC": nc, "k": k}).build((1, 8, 8)), (1, 8, 8))
    }
    assert rows["cat1"].output_shape == [2 * nf + 2 * nf, 2, 2]  # rfconv output + second block's output
    assert rows["conv4"].weights == nf * 4 * nf * k * k
    assert rows["cat2"].output_shape == [nf + nf, 4, 4]  # up block + first block
    assert rows["conv5"].weights == nc * 2 * nf * k * k
    assert rows["cat3"].output_shape == [nc + 1, 8, 8]  # the greyscale input before the last convolution
    assert rows["conv6"].weights == nc * (nc + 1) * k * k
    assert rows["conv6"].output_shape == [nc, 8, 8]


def test_net28_explanation_shows_why_512_features():
    result = summarise(resolve("net28"), (3, 28, 28), Options(explain=True, measure=False))
    arithmetic = {row[0]: row[3] for row in result.base.explain}
    assert arithmetic["conv1"].startswith("H: floor((28 - 5 + 2*0)/1) + 1 = 24")
    assert arithmetic["flatten1"] == "32 * 4 * 4 = 512 features"
    note = " ".join(result.base.explain_notes)
    assert (
        "dense1 receives 512 features" in note
        and "28 -> 24 (conv1) -> 20 (conv2) -> 10 (maxpool1) -> 8 (conv3) -> 4 (maxpool2)" in note
    )


@pytest.mark.parametrize(
    "spec, shape, words",
    [
        (
            "conv 8 k5 -> conv 8 k5",
            (1, 6, 6),
            ["layer 2 'conv 8 k5'", "kernel (5) is larger", "floor((2 - 5 + 2*0)/1) + 1"],
        ),
        (
            "conv 8 k3 -> maxpool 2 -> flatten -> dense 10 in=100",
            (1, 6, 6),
            ["layer 4 'dense 10 in=100'", "8 * 2 * 2 = 32"],
        ),
        (
            "save a -> conv 8 k3 -> cat a",
            (1, 6, 6),
            ["layer 3 'cat a'", "(1, 6, 6)", "(8, 4, 4)", "floor((6 - 3 + 2*0)/1) + 1 = 4"],
        ),
    ],
)
def test_misfits_are_refused_with_the_layer_and_the_arithmetic(spec, shape, words):
    with pytest.raises(CnnlabError) as e:
        from_spec(spec).build(shape)
    for w in words:
        assert w in str(e.value)


def test_a_module_that_does_not_fit_names_its_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(CnnlabError, match=r"layer '2' \(Linear\(in_features=10.*cannot take an input of shape \[8\]"):
        count(model, (1, 4, 4))


def test_separable_what_if_by_hand():
    subject = Subject("one conv", (4, 6, 6), recipe=from_spec("conv 8 k3 p1"))
    result = summarise(subject, (4, 6, 6), Options(whatif=WhatIf(separable=True), measure=False))
    before = 8 * 4 * 9 * 36  # k^2 * Cin * Cout * HW
    after = 4 * 9 * 36 + 4 * 8 * 36  # depthwise k^2 * Cin * HW + pointwise Cin * Cout * HW
    assert result.base.total["macs"] == before and result.variant.total["macs"] == after
    assert result.variant.total["params"] == 4 * 9 + (4 * 8 + 8)  # depthwise without bias, pointwise keeps it
    data = counts_record(result).extra["whatif"]["separable"][0]
    assert data["speedup_exact"] == pytest.approx(before / after)
    assert data["speedup_formula"] == pytest.approx(9 * 8 / (9 + 8))  # k^2 Cout / (k^2 + Cout), exact per layer
    assert data["limit"] == 9


def test_scale_and_no_bn_what_ifs():
    result = summarise(resolve("colour_cnn"), (1, 32, 32), Options(whatif=WhatIf(scale=2), measure=False))
    factor = counts_record(result).extra["whatif"]["factor"]
    assert factor == {"params": 1.0, "buffers": 1.0, "macs": 4.0, "activation_bytes": 4.0}
    result = summarise(resolve("colour_cnn"), (1, 32, 32), Options(whatif=WhatIf(no_bn=True), measure=False))
    nf, nc = 32, 24
    assert result.base.total["params"] - result.variant.total["params"] == 2 * (nf + 2 * nf + 2 * nf + nf + nc)
    assert result.variant.total["buffers"] == 0
    resnet = summarise(resolve("resnet18"), (3, 64, 64), Options(whatif=WhatIf(no_bn=True), measure=False))
    assert resnet.base.total["params"] - resnet.variant.total["params"] == 2 * 4800  # BN: 2C params, 9,600 in all


def test_training_step_memory_estimate_and_measurement():
    subject = resolve("conv 4 k3 p1 -> relu -> flatten -> dense 2")
    result = summarise(subject, (1, 6, 6), Options(batch_size=2, measure=True, device="cpu"))
    step = result.base.step
    params = 4 * 9 + 4 + 144 * 2 + 2
    assert step.parameters == step.gradients == step.optimizer_state == F32 * params  # SGD with momentum
    assert step.input_batch == F32 * 2 * 36
    # autograd keeps the ReLU output (its own backward and the dense layer's weight gradient use the same tensor)
    assert step.saved_activations == F32 * 2 * 4 * 36
    measured = result.base.measured
    assert measured.by_kind["parameters"] == F32 * params and measured.by_kind["optimizer state"] == F32 * params
    assert measured.peak_bytes >= step.parameters + step.optimizer_state + step.input_batch


def test_live_tensor_peak_equals_torch_memtracker():
    from torch.distributed._tools.mem_tracker import MemTracker

    model = from_zoo("simplenn").build((3, 32, 32))
    ours = measure_step(model, (3, 32, 32), 4, OPTIMIZERS["momentum"], torch.device("cpu"))
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    train_step(net, x, opt)
    tracker = MemTracker()
    tracker.track_external(net, opt, x)
    with tracker:
        train_step(net, x, opt)
    assert ours.peak_bytes == tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


def test_cli_json_has_the_promised_keys(tmp_path):
    out = CliRunner().invoke(
        app,
        [
            "summary",
            "colour_cnn",
            "NF=8",
            "NC=4",
            "k=3",
            "--input",
            "1x16x16",
            "--format",
            "json",
            "--no-measure",
            "--csv",
            str(tmp_path / "t.csv"),
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["input"] == [1, 16, 16]
    for row in data["layers"]:
        assert {
            "name",
            "type",
            "output_shape",
            "weights",
            "biases",
            "params",
            "trainable_params",
            "buffers",
            "macs",
            "activation_bytes",
        } <= set(row)
    assert {"params", "trainable_params", "buffers", "macs", "activation_bytes"} <= set(data["total"])
    assert data["layers"][0]["weights"] == 8 * 1 * 9
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("layer,type,input,output,weights")


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex"])
def test_formats_carry_the_table_and_the_conventions(fmt):
    result = summarise(resolve("simplenn"), (3, 32, 32), Options(measure=False))
    text = render(document(result), fmt)
    assert "conv1" in text and "dense3" in text
    assert ("named\\_parameters" if fmt == "latex" else "named_parameters") in text and "FLOPs = 2 x MACs" in text


def test_columns_option_and_unknown_column():
    runner = CliRunner()
    out = runner.invoke(app, ["summary", "net28", "--columns", "name,macs", "--format", "markdown", "--no-measure"])
    assert out.exit_code == 0 and "| layer | MACs |" in out.output
    with pytest.raises(CnnlabError, match="unknown column"):
        document(summarise(resolve("net28"), (3, 28, 28), Options(measure=False)), ["name", "flops"])


def test_experiment_takes_its_input_from_the_dataset():
    subject = resolve("quickstart")
    assert subject.input == (1, 28, 28)  # Fashion-MNIST, without loading it


def test_cost_finetune_measures_both_configurations():
    out = CliRunner().invoke(
        app,
        [
            "cost",
            "finetune",
            "conv 8 k3 p1 -> relu -> conv 8 k3 p1 -> relu -> flatten -> dense 3",
            "--input",
            "1x8x8",
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["last_layer"] == "dense1"
    whole, last = data["whole"], data["last_layer_only"]
    assert last["estimate"]["trainable_params"] == 8 * 8 * 8 * 3 + 3
    assert last["estimate"]["gradients"] == F32 * (512 * 3 + 3)
    assert whole["measured"]["peak_bytes"] > last["measured"]["peak_bytes"]
    assert last["estimate"]["saved_activations"] < whole["estimate"]["saved_activations"]
    assert last["estimate"]["first_saving"] == "dense1"  # nothing is kept below the only trainable layer
    assert data["ratio"]["peak_bytes"] > 1


def test_cost_finetune_of_an_experiment_with_a_frozen_selection_measures_the_whole_network_trained():
    """resnet18-transfer-cifar10 builds its model with model.trainable [layer4, fc] applied (the frozen front runs
    without autograd, its batch norms in eval): the whole-network configuration must undo that selection."""
    out = CliRunner().invoke(
        app,
        [
            "cost",
            "finetune",
            "resnet18-transfer-cifar10",
            "--input",
            "3x32x32",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    whole, last = data["whole"], data["last_layer_only"]
    assert data["last_layer"] == "fc" and last["estimate"]["trainable_params"] == 512 * 10 + 10
    assert whole["estimate"]["trainable_params"] * F32 == whole["estimate"]["parameters"]  # every parameter trains
    measured = whole["measured"]["by_kind"]  # Adam: two moments per parameter of the whole network
    assert measured["optimizer state"] >= 2 * whole["estimate"]["parameters"]
    assert measured["gradients and temporaries (backward)"] > 0
    assert whole["estimate"]["first_saving"] == "bn1"  # activations kept from the front on (conv1's is the input batch)
    assert data["ratio"]["peak_bytes"] > 3


def test_layer_table_keeps_the_keys_runs_and_reports_read():
    from cnnlab.analysis.layer_table import layer_table

    rows = layer_table(from_zoo("simplenn").build((1, 28, 28)), (1, 28, 28))
    assert rows[0]["name"] == "conv1" and rows[0]["type"] == "Conv2d" and rows[0]["output_shape"] == [8, 24, 24]
    assert {"params", "trainable_params", "buffers"} <= set(rows[0])
    assert (
        sum(r["params"] for r in rows)
        == 5 * 5 * 8 + 8 + 2 * 8 + 3 * 3 * 8 * 16 + 16 + 2 * 16 + 16 * 5 * 5 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    )
    json.dumps(rows)  # architecture.json


@pytest.mark.parametrize("groups", [1, 4, 64])
def test_backward_macs_of_grouped_convolutions_match_a_hand_count(groups):
    """Two 3x3 convolutions, C=64, at 16x16, batch 2: each forward is N*H*W*C*(C/groups)*9 MACs. Backward: the first
    needs only its weight gradient (the input asks for none), the second its weight and input gradients, each as
    much work as its forward; torch's own counter makes the weight gradient `groups` times too large."""
    from cnnlab.analysis.step_cost import training_pass

    c, h, n = 64, 16, 2
    model = nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False),
        nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False),
    )
    one = n * h * h * c * (c // groups) * 9
    run = training_pass(model, (c, h, h), n)
    assert (run.forward_macs, run.backward_macs) == (2 * one, 3 * one)
