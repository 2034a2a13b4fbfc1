"""Transfer learning on real modules: torchvision networks with new heads, weights from files, torchvision's
cache and cnnlab runs, frozen parts that stay put while real CIFAR-10 images train the rest."""

import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

from cnnlab.data import load_images
from cnnlab.data.resize import resize_batch
from cnnlab.engine import checkpoint
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.freeze import param_groups, set_trainable, trainable_at, trainable_prefixes
from cnnlab.models.pretrained import cached_file, load_pretrained, torchvision_weights
from cnnlab.models.torchvision_models import build_for_classes, build_untrained, transfer_names
from tests.conftest import quick_config

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HEADS = {
    "resnet18": ["fc"],
    "resnet34": ["fc"],
    "resnet50": ["fc"],
    "mobilenet_v3_small": ["classifier.3"],
    "efficientnet_b0": ["classifier.1"],
    "deeplabv3_resnet50": ["classifier.4"],
    "deeplabv3_mobilenet_v3_large": ["classifier.4"],
}
SMALL = {"resnet18", "mobilenet_v3_small", "efficientnet_b0", "deeplabv3_mobilenet_v3_large"}  # quick to run


@pytest.fixture(scope="module")
def cifar_batch(data_root) -> tuple[torch.Tensor, torch.Tensor]:
    """16 real CIFAR-10 training images, normalised with ImageNet's statistics as pretrained weights expect."""
    train, _, _ = load_images(SimpleNamespace(dataset="cifar10", path=None, image_size=None), data_root)
    idx = torch.arange(16) * 997
    x = train.images[idx].float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x, train.labels[idx]


def save_state(tmp_path: Path, module: torch.nn.Module, name: str) -> Path:
    path = tmp_path / name
    torch.save(module.state_dict(), path)
    return path


def train_steps(model, batch, groups, steps=3, lr=1e-3) -> torch.optim.Optimizer:
    x, y = batch
    optimizer = torch.optim.Adam(groups, lr=lr)
    model.train()
    for _ in range(steps):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed(before: dict, model) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("name", list(HEADS))
def test_head_is_sized_for_the_classes_and_named(name):
    net = build_for_classes(name, 7)
    assert net.heads == HEADS[name]
    head = net.module.get_submodule(net.heads[0])
    assert (head.out_features if isinstance(head, torch.nn.Linear) else head.out_channels) == 7
    if name in SMALL:
        size = 64 if net.task == "segment" else 32
        out = net.module.eval()(torch.randn(2, 3, size, size))
        assert out.shape == ((2, 7, size, size) if net.task == "segment" else (2, 7))


def test_only_classification_and_simple_segmentation_models_are_offered():
    offered = transfer_names()
    assert (
        set(HEADS) <= set(offered)
        and "fasterrcnn_resnet50_fpn" not in offered
        and "lraspp_mobilenet_v3_large" not in offered
    )
    with pytest.raises(CnnlabError, match="not a torchvision classification model"):
        build_for_classes("lraspp_mobilenet_v3_large", 2)


def test_segmentation_wrapper_keeps_torchvisions_keys_and_output():
    net = build_for_classes("deeplabv3_mobilenet_v3_large", 3)
    plain = build_untrained("deeplabv3_mobilenet_v3_large", num_classes=3, aux_loss=False)
    assert list(net.module.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(net.module.state_dict())
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(net.module.eval()(x), plain.eval()(x)["out"])


def test_torchvision_state_dict_loads_with_exactly_the_head_skipped(tmp_path):
    source = torchvision.models.resnet18()  # torchvision's own architecture, 1000 classes, random weights
    path = save_state(tmp_path, source, "resnet18.pth")
    net = build_for_classes("resnet18", 10)
    record = load_pretrained(net, str(path))
    assert record.skipped_head == ["fc.weight", "fc.bias"]
    assert record.missing == [] and record.unexpected == [] and record.mean is None
    own = net.module.state_dict()
    assert record.loaded == len(own) - 2
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if not k.startswith("fc."))


def test_torchvision_weights_come_from_its_cache_or_a_message_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = build_for_classes("resnet18", 10)
    with pytest.raises(CnnlabError) as e:
        load_pretrained(net, "imagenet")
    message = str(e.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--download" in message and "\n" not in message
    with pytest.raises(CnnlabError, match="no coco weights for resnet18"):
        load_pretrained(net, "coco")
    weights = torchvision_weights("resnet18", "imagenet")
    cached_file(weights).parent.mkdir(parents=True)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), cached_file(weights))
    record = load_pretrained(net, "imagenet")
    assert record.weights == "ResNet18_Weights.IMAGENET1K_V1" and record.skipped_head == ["fc.weight", "fc.bias"]
    assert record.mean == IMAGENET_MEAN and record.std == IMAGENET_STD
    assert torch.equal(net.module.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_coco_weights_load_into_deeplab_without_the_auxiliary_head(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision_weights("deeplabv3_mobilenet_v3_large", "coco")
    assert weights.name == "COCO_WITH_VOC_LABELS_V1"
    cached_file(weights).parent.mkdir(parents=True)
    # torchvision's COCO checkpoints hold the auxiliary head: build the same architecture to write one
    source = build_untrained("deeplabv3_mobilenet_v3_large", num_classes=21, aux_loss=True)
    torch.save(source.state_dict(), cached_file(weights))
    net = build_for_classes("deeplabv3_mobilenet_v3_large", 2)
    record = load_pretrained(net, "coco")
    assert record.skipped_head == ["classifier.4.weight", "classifier.4.bias"]
    assert record.unexpected and all(k.startswith("aux_classifier.") for k in record.unexpected)
    assert record.mean == IMAGENET_MEAN


def test_cnnlab_run_folder_is_a_source(tmp_path):
    trained = build_for_classes("resnet18", 6).module  # the source run's network: 6 classes
    run = tmp_path / "runs" / "transfer-source" / "20250101-000000-s0"
    checkpoint.save(run / "checkpoints" / "best.pt", model=trained.state_dict(), epoch=3)
    (run / "config.yaml").write_text("name: transfer-source\n")
    target = build_for_classes("resnet18", 4)
    record = load_pretrained(target, str(run))
    assert record.file == str(run / "checkpoints" / "best.pt") and record.skipped_head == ["fc.weight", "fc.bias"]
    assert torch.equal(target.module.conv1.weight, trained.conv1.weight)
    same_classes = build_for_classes("resnet18", 6)
    assert load_pretrained(same_classes, str(run)).skipped_head == []  # the head fits, so it loads too
    assert torch.equal(same_classes.module.fc.weight, trained.fc.weight)
    fresh = build_for_classes("resnet18", 6)  # model.new_head: the fitting head is not loaded either
    fresh_fc = fresh.module.fc.weight.clone()
    assert load_pretrained(fresh, str(run), new_head=True).skipped_head == ["fc.weight", "fc.bias"]
    assert torch.equal(fresh.module.fc.weight, fresh_fc) and torch.equal(
        fresh.module.conv1.weight, trained.conv1.weight
    )
    with pytest.raises(CnnlabError, match="holds no checkpoints/best.pt"):
        load_pretrained(target, str(tmp_path / "runs"))
    newer = run.parent / "20250102-000000-s0"  # a folder of runs stands for its newest run with a best.pt
    checkpoint.save(newer / "checkpoints" / "best.pt", model=build_for_classes("resnet18", 6).module.state_dict())
    (run.parent / "20250103-000000-s0").mkdir()  # newer still, but it never finished an epoch
    assert load_pretrained(build_for_classes("resnet18", 4), str(run.parent)).file == str(
        newer / "checkpoints" / "best.pt"
    )


class Payload:
    """Stands for any object a pickle would rebuild by running code."""


@pytest.mark.parametrize("extra", [Payload(), os.system], ids=["object", "function"])
def test_checkpoint_carrying_code_is_refused_in_one_line(tmp_path, extra):
    path = tmp_path / "evil.pt"
    torch.save({"model": build_for_classes("resnet18", 10).module.state_dict(), "extra": extra}, path)
    with pytest.raises(CnnlabError) as e:
        load_pretrained(build_for_classes("resnet18", 10), str(path))
    message = str(e.value)
    assert "holds code" in message and "was not loaded" in message and "\n" not in message
    assert ("Payload" if isinstance(extra, Payload) else "system") in message
    assert "weights_only=False" not in message


def test_weights_of_another_architecture_are_refused_naming_the_keys(tmp_path):
    resnet50 = save_state(tmp_path, torchvision.models.resnet50(), "resnet50.pth")
    with pytest.raises(CnnlabError) as e:
        load_pretrained(build_for_classes("resnet18", 10), str(resnet50))
    message = str(e.value)
    assert "does not fit resnet18" in message and "\n" not in message
    assert "layer1.0.conv1.weight (file 64x64x1x1, model 64x64x3x3)" in message and "more" in message
    simplenn = tmp_path / "simplenn.pt"
    checkpoint.save(simplenn, model=create_model(quick_config().model, (3, 32, 32), 10).state_dict())
    with pytest.raises(CnnlabError, match=r"does not fit resnet18: conv1.weight \(file .*, model 64x3x7x7\)"):
        load_pretrained(build_for_classes("resnet18", 10), str(simplenn))


def test_frozen_tensors_and_batch_norm_statistics_stay_put_on_real_images(cifar_batch):
    net = build_for_classes("resnet18", 10)
    prefixes = trainable_prefixes(["layer4", "fc"], net.heads)
    record = set_trainable(net.module, prefixes)
    assert record.frozen_blocks == ["conv1", "bn1", "layer1", "layer2", "layer3"]
    assert record.trainable_params == sum(
        p.numel() for n, p in net.module.named_parameters() if n.startswith(("layer4.", "fc."))
    )
    before = snapshot(net.module)
    x, y = cifar_batch
    optimizer = train_steps(net.module, (resize_batch(x, 64), y), param_groups(net.module, net.heads, prefixes))
    moved = changed(before, net.module)
    assert moved and all(k.startswith(("layer4.", "fc.")) for k in moved)  # running statistics included
    assert {k for k in before if k.startswith(("layer4.", "fc.")) and not k.endswith("num_batches_tracked")} <= moved
    assert not net.module.bn1.training and not net.module.layer3[1].bn2.training and net.module.layer4[0].bn1.training
    frozen = {id(p) for n, p in net.module.named_parameters() if not n.startswith(("layer4.", "fc."))}
    assert not any(id(p) in frozen for p in optimizer.state)


def test_frozen_front_without_autograd_gives_the_same_gradients(cifar_batch):
    fast = build_for_classes("resnet18", 10).module
    set_trainable(fast, ["layer4", "fc"])
    plain = copy.deepcopy(fast)
    set_trainable(plain, None)  # no blocks replaced; the same flags and modes set by hand below
    for name, p in plain.named_parameters():
        p.requires_grad_(name.startswith(("layer4.", "fc.")))
    plain.train()
    for name, m in plain.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d) and not name.startswith("layer4."):
            m.eval()
    fast.train()
    grad_mode = {}  # whether autograd was on while layer3 ran (seen from a layer inside it)

    def note_grad_mode(key):
        def hook(*_):
            grad_mode[key] = torch.is_grad_enabled()

        return hook

    for model_name, model in (("fast", fast), ("plain", plain)):
        model.layer3[1].conv2.register_forward_hook(note_grad_mode(model_name))
    x, y = cifar_batch
    for input_needs_grad in (False, True):
        grads = {}
        for model_name, model in (("fast", fast), ("plain", plain)):
            inputs = x.clone().requires_grad_(input_needs_grad)
            torch.nn.functional.cross_entropy(model(inputs), y).backward()
            grads[model_name] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            grads[model_name]["input"] = inputs.grad
            model.zero_grad(set_to_none=True)
        assert grads["fast"].keys() == grads["plain"].keys()
        assert all(
            a is None and b is None or torch.allclose(a, b, rtol=1e-5, atol=1e-7)
            for a, b in ((grads["fast"][k], grads["plain"][k]) for k in grads["fast"])
        )
        assert grad_mode.pop("fast") is input_needs_grad and grad_mode.pop("plain") is True


def test_unfreeze_after_switches_the_right_tensors_at_the_right_epoch(cifar_batch):
    net = build_for_classes("resnet18", 10)
    prefixes = trainable_prefixes(["layer4", "fc"], net.heads)
    groups = param_groups(net.module, net.heads, prefixes, body_lr_mult=0.1)
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1]
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    moved_by_epoch = []
    for epoch in range(3):
        record = set_trainable(net.module, trainable_at(epoch, prefixes, net.heads, unfreeze_after=1))
        if epoch == 1:
            assert record.became_trainable and all(n.startswith("layer4.") for n in record.became_trainable)
            assert len(record.became_trainable) == sum(
                1 for n, _ in net.module.named_parameters() if n.startswith("layer4.")
            )
        else:
            assert record.became_trainable == []
        before = snapshot(net.module)
        net.module.train()
        x, y = cifar_batch
        torch.nn.functional.cross_entropy(net.module(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        moved_by_epoch.append({k.split(".")[0] for k in changed(before, net.module)})
        assert len(optimizer.state) == sum(p.requires_grad for p in net.module.parameters())
    assert moved_by_epoch == [{"fc"}, {"layer4", "fc"}, {"layer4", "fc"}]
    assert net.module.layer4[0].bn1.training and not net.module.layer3[0].bn1.training


def test_deeplab_last_layer_trains_only_the_final_convolution():
    net = build_for_classes("deeplabv3_mobilenet_v3_large", 2)
    record = set_trainable(net.module, trainable_prefixes("last", net.heads))
    assert record.trainable_params == 256 * 2 + 2 and record.frozen_blocks[0] == "backbone"
    net.module.train()
    assert not any(m.training for m in net.module.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_trainable_policy_names_are_checked():
    net = build_for_classes("resnet18", 10)
    with pytest.raises(CnnlabError, match="layer5 names no part of the model.*conv1, bn1, layer1"):
        set_trainable(net.module, ["layer5", "fc"])
    with pytest.raises(CnnlabError, match="all, last or a list"):
        trainable_prefixes("head", net.heads)


def test_resize_on_the_device_keeps_the_picture(cifar_batch):
    x, _ = cifar_batch
    big = resize_batch(x, 256)
    assert big.shape == (16, 3, 256, 256) and resize_batch(big, 256) is big
    back = torch.nn.functional.avg_pool2d(big, 8)  # x8 up then 8x8 mean: close to the original picture
    assert (back - x).abs().mean() < 0.1 * x.abs().mean()
