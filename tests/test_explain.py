"""Look inside: layer names and shapes, activations, Grad-CAM, filter grid, confusion, sparsity, and the figures."""

import json
import math

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from cnnlab.engine.restore import restore
from cnnlab.errors import CnnlabError
from cnnlab.explain import explain_run
from cnnlab.explain.activations import activations
from cnnlab.explain.confusion import confusion, most_confused, split_outputs
from cnnlab.explain.filters import filter_tiles
from cnnlab.explain.gradcam import grad_cam
from cnnlab.explain.layer_listing import find_layer, list_layers
from cnnlab.explain.sparsity import sparsity, tensor_sparsity
from cnnlab.runner import start_run
from cnnlab.viz.filters import plot_filter_grid
from tests.conftest import quick_config


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """SimpleNN trained one epoch on a Fashion-MNIST slice by cnnlab's trainer, back from its best checkpoint."""
    run = start_run(quick_config(), tmp_path_factory.mktemp("runs"), data_root)
    built = restore(run, data_root, "best")
    return run, built.data, built.model


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


class Twin(nn.Module):
    """conv -> relu -> conv -> relu -> conv -> relu -> pool -> dense, written three ways with the same weights:
    `inplace` ReLUs, one `shared` ReLU module used at all three places, or plain separate ReLUs."""

    def __init__(self, inplace: bool, shared: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        acts = [nn.ReLU(inplace=inplace)] * 3 if shared else [nn.ReLU(inplace=inplace) for _ in range(3)]
        self.act1, self.act2, self.act3 = acts

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.act3(self.conv3(x))
        return self.fc(x.mean((2, 3)))


def manual_cam(net: Twin, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM at conv2 by hand: split the forward at conv2's output and differentiate against it."""
    a = net.conv2(F.relu(net.conv1(x))).detach().requires_grad_()
    logits = net.fc(F.relu(net.conv3(F.relu(a))).mean((2, 3)))
    (g,) = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), a)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.flatten(1).amax(1).view(-1, 1, 1)


def test_resnet18_layer_listing_at_256():
    model = torchvision.models.resnet18(weights=None)
    listing = list_layers(model, (3, 256, 256))
    shapes = {row.name: row.output_shapes for row in listing.rows}
    assert shapes["conv1"] == [[64, 128, 128]] and shapes["layer4"] == [[512, 8, 8]]
    assert shapes["fc"] == [[1000]] and shapes["layer4.1.conv2"] == [[512, 8, 8]]
    assert len(shapes["layer1.0.relu"]) == 2  # a BasicBlock runs its ReLU twice: one shape per call
    assert (listing.first, listing.last, listing.last_conv) == ("conv1", "layer4", "layer4.1.conv2")
    assert {row.name for row in listing.rows} == {n for n, _ in model.named_modules() if n}
    assert [row.name for row in listing.rows if row.is_conv][:2] == ["conv1", "layer1.0.conv1"]
    assert listing.resolve("last") == "layer4" and listing.resolve("first") == "conv1"
    json.dumps(listing.as_dict())


def test_first_and_last_convolution_follow_execution_not_definition():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 5, 3)  # defined first, runs last
            self.early = nn.Conv2d(1, 4, 3)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.late(self.early(x))

    listing = list_layers(Backwards(), (1, 10, 10))
    assert (listing.first, listing.last) == ("early", "late")
    assert [row.name for row in listing.rows] == ["early", "late", "unused"]
    assert listing.rows[-1].output_shapes == [] and not listing.rows[-1].ran


def test_unknown_layer_names_the_closest_and_cnnlab_layers():
    model = torchvision.models.resnet18(weights=None)
    listing = list_layers(model, (3, 64, 64))
    with pytest.raises(CnnlabError) as err:
        listing.resolve("layer5")
    message = str(err.value)
    assert "'layer5'" in message and "layer4" in message and "`cnnlab layers`" in message
    with pytest.raises(CnnlabError, match="layer4.1.conv2"):
        activations(model, torch.zeros(1, 3, 64, 64), ["layer4.1.conv3"])


def test_activations_equal_a_manual_forward_on_real_images(trained):
    _, splits, model = trained
    x, _ = splits.test.first(4)
    got = activations(model, x, ["conv2", "relu1"])
    manual = x
    for name, layer in model.named_children():  # SpecNet runs its children in order
        manual = layer(manual)
        if name == "relu1":
            assert torch.equal(got["relu1"][0], manual)
        if name == "conv2":
            break
    assert len(got["conv2"]) == 1 and torch.allclose(got["conv2"][0], manual, atol=1e-6)


def test_activation_is_the_layers_own_output_with_inplace_relu_and_per_call():
    torch.manual_seed(0)
    net = Twin(inplace=True, shared=True).eval()
    x = torch.randn(2, 3, 8, 8)
    got = activations(net, x, ["conv1", "act1"])
    conv1 = net.conv1(x)
    assert torch.allclose(got["conv1"][0], conv1) and (got["conv1"][0] < 0).any()  # not overwritten by the ReLU
    # one ReLU module used at three places: three calls, each its own output
    assert len(got["act1"]) == 3 and torch.allclose(got["act1"][0], F.relu(conv1))
    assert got["act1"][1].shape == (2, 8, 8, 8)
    assert torch.allclose(got["act1"][1], F.relu(net.conv2(F.relu(conv1))))


def test_hooks_removed_and_modes_restored_when_the_pass_fails():
    model = torchvision.models.resnet18(weights=None)
    model.train()
    model.layer1.eval()  # a frozen part stays in eval mode inside a training model
    wrong = torch.zeros(1, 5, 64, 64)  # 5 channels into a 3-channel conv1
    with pytest.raises(RuntimeError):
        activations(model, wrong, ["conv1", "layer4"])
    with pytest.raises(RuntimeError):
        grad_cam(model, wrong, "layer4", torch.tensor([0]))
    with pytest.raises(CnnlabError, match="input of shape"):
        list_layers(model, (5, 64, 64))
    assert hooks_left(model) == 0
    assert model.training and model.layer2.training and not model.layer1.training
    assert not any(m.training for m in model.layer1.modules())
    assert all(p.grad is None for p in model.parameters())


def test_grad_cam_with_inplace_relu_and_reused_module_equals_the_plain_network():
    torch.manual_seed(0)
    plain = Twin(inplace=False, shared=False)
    x = torch.randn(3, 3, 12, 12)
    targets = torch.tensor([0, 2, 3])
    reference = grad_cam(plain, x, "conv2", targets)
    assert torch.allclose(reference.maps, manual_cam(plain.eval(), x, targets), atol=1e-5)
    for inplace, shared in ((True, False), (False, True), (True, True)):
        twin = Twin(inplace, shared)
        twin.load_state_dict(plain.state_dict())
        for layer in ("conv2", "conv3", "conv1"):
            want = grad_cam(plain, x, layer, targets)
            got = grad_cam(twin, x, layer, targets)
            assert torch.allclose(got.maps, want.maps, atol=1e-5), (inplace, shared, layer)
            assert torch.allclose(got.peak, want.peak, rtol=1e-5)
        # the shared ReLU module, at its second call, is the same tensor as the plain network's act2
        assert torch.allclose(
            grad_cam(twin, x, "act1", targets, call=2).maps if shared else grad_cam(twin, x, "act2", targets).maps,
            grad_cam(plain, x, "act2", targets).maps,
            atol=1e-5,
        )
    assert hooks_left(plain) == 0


def test_grad_cam_on_a_frozen_backbone_and_the_predicted_class():
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    for p in model.parameters():
        p.requires_grad_(False)
    cam = grad_cam(model, torch.randn(2, 3, 64, 64), "layer4")
    assert cam.maps.shape == (2, 64, 64) and cam.maps.max() <= 1 and cam.call == 1
    assert cam.grid == (2, 2) and grad_cam(model, torch.randn(1, 3, 32, 32), "layer4").grid == (1, 1)  # stride 32


def test_filter_grid_has_one_tile_per_filter(tmp_path):
    torch.manual_seed(0)
    rgb = filter_tiles(nn.Conv2d(3, 16, 5), "conv1")
    assert rgb.rgb and rgb.tiles.shape == (16, 3, 5, 5) and rgb.ranges.shape == (16, 2)
    for tile in rgb.tiles:  # each filter on its own scale: exactly 0 to 1
        assert tile.min() == 0 and tile.max() == pytest.approx(1)
    drawn = plot_filter_grid(rgb.tiles, rgb.ranges, rgb.per_row, tmp_path / "rgb.png", "conv1", rgb.rgb)
    assert drawn["tiles"] == 16 and drawn["grid_size"] == [2 * 6 + 1, 8 * 6 + 1]  # 2 rows x 8 tiles of 5 + 1 padding
    grey = filter_tiles(nn.Conv2d(2, 5, 3), "conv1")
    assert not grey.rgb and grey.tiles.shape == (10, 1, 3, 3) and grey.per_row == 2  # a row per filter
    drawn = plot_filter_grid(grey.tiles, grey.ranges, grey.per_row, tmp_path / "grey.png", "conv1", grey.rgb)
    assert (
        drawn["tiles"] == 10 and drawn["grid_size"] == [5 * 4 + 1, 2 * 4 + 1] and (tmp_path / "grey.png").stat().st_size
    )
    resnet = filter_tiles(find_layer(torchvision.models.resnet18(weights=None), "conv1"))
    assert resnet.tiles.shape == (64, 3, 7, 7)
    with pytest.raises(CnnlabError, match="not a Conv2d"):
        filter_tiles(nn.Linear(2, 2), "fc")


def test_confusion_matrix_on_a_trained_checkpoint(trained):
    run, splits, model = trained
    model.eval()
    outputs, labels = split_outputs(model, splits.test)
    matrix = confusion(outputs, labels, splits.classes)
    assert matrix.total == splits.test.num_images == 200
    assert matrix.counts.sum(1).tolist() == torch.bincount(labels, minlength=10).tolist()
    with torch.no_grad():
        independent = sum(int(model(x).argmax(1).eq(y).sum()) for x, y in splits.test.batches()) / 200
    assert matrix.accuracy == pytest.approx(independent)
    assert matrix.accuracy == pytest.approx(run.summary().to_dict()["test_acc_at_best"])
    per_class = matrix.per_class_accuracy()
    assert sum(per_class[c] * 20 for c in splits.classes) == pytest.approx(matrix.accuracy * 200)  # 20 a class
    normalised = matrix.row_normalised()
    assert torch.allclose(normalised.sum(1), torch.ones(10, dtype=torch.float64))
    worst = most_confused(outputs, labels, splits.classes, 5)
    probs = outputs.softmax(1)
    assert len(worst) == 5 and all(w["true"] != w["predicted"] for w in worst)
    assert [w["probability"] for w in worst] == sorted((w["probability"] for w in worst), reverse=True)
    wrong = probs.argmax(1) != labels
    assert worst[0]["probability"] == pytest.approx(float(probs.max(1).values[wrong].max()))
    assert splits.classes[int(labels[worst[0]["index"]])] == worst[0]["true"]
    with pytest.raises(CnnlabError, match="its own order"):
        split_outputs(model, splits.train)


def test_confusion_from_tensors_and_shape_check():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0], [0, 0, 1.0]])
    labels = torch.tensor([0, 1, 1, 2])
    matrix = confusion(logits, labels, ["a", "b", "c"])
    assert matrix.counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert matrix.accuracy == 0.75 and matrix.per_class_accuracy() == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert confusion(logits[:3], labels[:3], ["a", "b", "c"]).per_class_accuracy()["c"] is None  # no examples of c
    with pytest.raises(CnnlabError, match="class labels"):
        confusion(logits, torch.zeros(4, 5, 5, dtype=torch.long), ["a", "b", "c"])


def test_sparsity_on_hand_made_weights():
    w = torch.tensor([0.0, 1e-4, -5e-4, 2e-3, -1.0, 0.0, -1e-3, 0.5])
    assert tensor_sparsity(w, 1e-3) == {"weights": 8, "below": 4, "zeros": 2, "share_below": 0.5, "share_zero": 0.25}
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.0, 0.0, 1.0, 1.0, 1e-5, 1.0, 1.0, 1.0]).view(2, 1, 2, 2))
        net[0].bias.zero_()  # biases are left out: these zeros must not count
        net[1].weight.zero_()  # so is batch norm
        net[3].weight.copy_(torch.tensor([[0.0, 2.0], [3.0, 4.0]]))
    report = sparsity(net)
    assert [(r["name"], r["weights"], r["below"], r["zeros"]) for r in report["layers"]] == [
        ("0", 8, 3, 2),
        ("3", 4, 1, 1),
    ]
    assert report["total"] == {"weights": 12, "below": 4, "zeros": 3, "share_below": 4 / 12, "share_zero": 3 / 12}
    assert "biases" in report["note"] and sparsity(net, threshold=2.5)["total"]["below"] == 10


def test_explain_run_writes_every_figure(trained, tmp_path):
    _, splits, model = trained
    model.train()
    record = explain_run(model, splits.test, splits.classes, tmp_path, example=3, confused=6)
    assert model.training and hooks_left(model) == 0
    files = [f["file"] for f in record["figures"]]
    assert files == [
        "filters.png",
        "activations-conv1.png",
        "activations-conv2.png",
        "gradcam.png",
        "confusion.png",
        "most-confused.png",
    ]
    for name in files:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(f["title"] and f["caption"] for f in record["figures"])
    assert record["layers"] == {
        "first": "conv1",
        "last": "conv2",
        "last_conv": "conv2",
        "last_spatial": "conv2",
        "shown": ["conv1", "conv2"],
        "cam": "conv2",
    }
    activation = record["figures"][1]
    assert activation["shape"] == [8, 24, 24] and activation["channels"] == list(range(8))  # all of conv1's 8
    assert len(record["figures"][2]["channels"]) == 16
    assert "(call 1, a 10x10 map)" in record["figures"][3]["caption"]  # conv2's own map: 28 -> 24 -> 12 -> 10
    assert record["confusion"]["total"] == 200 and len(record["most_confused"]) == 6
    assert record["image"]["index"] == 3 and record["image"]["true"] == splits.classes[int(splits.test.labels[3])]
    assert math.isclose(record["sparsity"]["threshold"], 1e-3)
    json.dumps(record)
    with pytest.raises(CnnlabError, match="closest names: conv2, conv1"):
        explain_run(model, splits.test, splits.classes, tmp_path, layers=["conv"])
