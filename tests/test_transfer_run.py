"""Transfer learning through real cnnlab runs on real data: a ResNet-18 source run on CIFAR-10 animals, a target
run on vehicles started from its folder with only layer4 and fc trained, unfreezing mid-run, resuming without
the source, DeepLabV3 with its last layer trained on Penn-Fudan, the class filter, and the config's refusals."""

import shutil

import pytest
import torch

from cnnlab.config import Config
from cnnlab.data import keep_classes, load_images, prepare
from cnnlab.data.registry import CIFAR10_CLASSES
from cnnlab.engine import checkpoint
from cnnlab.engine.run_setup import build_run
from cnnlab.engine.trainer import Progress, Trainer
from cnnlab.errors import CnnlabError
from cnnlab.models.torchvision_models import build_for_classes
from cnnlab.optimizers import make_optimizer
from cnnlab.runfolder import RunFolder
from cnnlab.runner import resume_run, start_run
from tests.conftest import quick_config

BODY = ("layer4.", "fc.")  # what [layer4, fc] trains


def resnet_config(**sections) -> Config:
    """ResNet-18 on a small class-balanced slice of CIFAR-10 at 32x32, one epoch."""
    base = dict(
        data={"dataset": "cifar10", "train_subset": 120, "test_subset": 60, "val_fraction": 0.25},
        model={"name": "resnet18"},
        optim={"name": "adam", "lr": 0.002},
        train={"epochs": 1, "batch_size": 30, "eval_batch_size": 200},
    )
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return quick_config(**base)


@pytest.fixture(scope="module")
def source_run(data_root, tmp_path_factory) -> RunFolder:
    """A whole ResNet-18 trained on three animal classes: the source every target here starts from."""
    cfg = resnet_config(name="source", data={"classes": ["bird", "cat", "deer"]})
    return start_run(cfg, tmp_path_factory.mktemp("runs"), data_root)


def weights(path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


@pytest.mark.slow
def test_target_starts_from_the_source_run_and_trains_only_layer4_and_fc(source_run, data_root, tmp_path):
    cfg = resnet_config(
        name="target",
        data={"classes": ["airplane", "ship"]},
        model={"pretrained": str(source_run.path), "trainable": ["layer4", "fc"]},
    )
    run = start_run(cfg, tmp_path, data_root)
    source, target = weights(source_run.best_path), weights(run.last_path)
    frozen = [k for k in target if not k.startswith(BODY)]
    assert frozen and all(torch.equal(target[k], source[k]) for k in frozen)  # batch-norm statistics included
    moved = [k for k in target if k.startswith("layer4.") and not k.endswith("num_batches_tracked")]
    assert all(not torch.equal(target[k], source[k]) for k in moved)
    summary = run.summary().to_dict()
    record = summary["transfer"]["pretrained"]
    assert record["file"] == str(source_run.best_path) and record["skipped_head"] == ["fc.weight", "fc.bias"]
    assert record["loaded"] == len(source) - 2 and record["missing"] == [] and record["unexpected"] == []
    assert summary["transfer"]["heads"] == ["fc"] and summary["transfer"]["trainable"] == ["layer4", "fc"]
    assert summary["classes"] == ["airplane", "ship"] and summary["initial_loss_ok"] is None  # pretrained: no ln(K)
    body = sum(p.numel() for k, p in build_for_classes("resnet18", 2).module.named_parameters() if k.startswith(BODY))
    assert summary["trainable_params"] == body and summary["frozen_params"] == summary["params"] - body
    rows = run.architecture()
    assert (
        sum(r["trainable_params"] for r in rows) == body
        and sum(r["frozen_params"] for r in rows) == summary["frozen_params"]
    )
    row = run.metrics()[0]
    assert row["seconds_per_step"] > 0 and row["peak_mem_mb"] > 0
    report = (run.path / "report.md").read_text()
    assert (
        "| trainable | frozen |" in report and "head tensors skipped (shape changed) | 2: fc.weight, fc.bias" in report
    )


@pytest.mark.slow
def test_unfreeze_after_moves_layer4_from_the_right_epoch(source_run, data_root, tmp_path):
    cfg = resnet_config(
        name="unfreeze",
        data={"classes": ["airplane", "ship"]},
        train={"epochs": 2, "unfreeze_after": 1},
        model={"pretrained": str(source_run.path), "trainable": ["layer4", "fc"]},
        optim={"body_lr_mult": 0.25},
    )
    built = build_run(cfg, data_root)
    start = {k: v.clone() for k, v in built.model.state_dict().items()}
    after, messages = [], []
    progress = Progress(
        epoch_end=lambda row: after.append({k: v.clone() for k, v in built.model.state_dict().items()}),
        message=messages.append,
    )
    trainer = Trainer(built, progress)
    trainer.attach(RunFolder.create(tmp_path, cfg))
    trainer.fit()

    def moved(before, now):
        return {k.split(".")[0] for k in now if not torch.equal(before[k], now[k])}

    assert moved(start, after[0]) == {"fc"} and moved(after[0], after[1]) == {"layer4", "fc"}
    unfrozen = [m for m in messages if "train from now on" in m]
    assert (
        len(unfrozen) == 1
        and unfrozen[0].startswith("epoch 2: 15 parameter tensors")
        and "layer4.1.conv2.weight" in unfrozen[0]
    )
    head, body = built.optimizer.param_groups
    assert body["lr"] == pytest.approx(0.25 * head["lr"]) and head["name"] == "head" and body["name"] == "body"


@pytest.mark.slow
def test_a_resumed_run_needs_no_source_and_keeps_its_record(source_run, data_root, tmp_path):
    copied = tmp_path / "source"
    shutil.copytree(source_run.path, copied)
    cfg = resnet_config(
        name="resumed",
        data={"classes": ["airplane", "ship"]},
        train={"epochs": 2},
        model={"pretrained": str(copied), "trainable": ["layer4", "fc"]},
    )

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, tmp_path / "runs", data_root, Progress(epoch_end=stop))
    run_dir = next((tmp_path / "runs" / "resumed").iterdir())
    record = RunFolder.open(run_dir).summary().to_dict()["transfer"]["pretrained"]
    shutil.rmtree(copied)  # last.pt holds the weights now; the source is not read again
    summary = resume_run(run_dir, data_root).summary().to_dict()
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    assert summary["transfer"]["pretrained"] == record and record["file"] == str(copied / "checkpoints" / "best.pt")


@pytest.mark.slow
def test_deeplab_with_its_last_layer_trained_runs_end_to_end_on_penn_fudan(data_root, tmp_path):
    cfg = quick_config(
        name="deeplab-last",
        task="segment",
        model={"name": "deeplabv3_mobilenet_v3_large", "trainable": "last"},
        data={"dataset": "pennfudan", "image_size": 64, "train_subset": 16, "test_subset": 10, "val_fraction": 0.25},
        train={"epochs": 1, "batch_size": 4, "eval_batch_size": 16},
        figures={"count": 2},
    )
    run = start_run(cfg, tmp_path, data_root)
    torch.manual_seed(cfg.seed)
    initial = build_for_classes("deeplabv3_mobilenet_v3_large", 2).module.state_dict()  # as build_run made it
    trained = weights(run.last_path)
    assert {k for k in trained if not torch.equal(trained[k], initial[k])} == {
        "classifier.4.weight",
        "classifier.4.bias",
    }
    summary = run.summary().to_dict()
    assert summary["status"] == "completed" and summary["trainable_params"] == 256 * 2 + 2
    assert summary["transfer"]["pretrained"]["left_out"] == ["aux_classifier"] and "test_iou" in summary["final"]
    assert all((run.path / f["file"]).is_file() for f in summary["figures"]) and summary["figures"]


def test_data_classes_keep_and_relabel_in_the_given_order(data_root):
    cfg = resnet_config(data={"classes": ["ship", "cat"], "train_subset": 200, "test_subset": 100})
    train, _, _ = load_images(cfg.data, data_root)
    kept = keep_classes(train, ["ship", "cat"])
    ship, cat = CIFAR10_CLASSES.index("ship"), CIFAR10_CLASSES.index("cat")
    chosen = torch.nonzero((train.labels == ship) | (train.labels == cat)).flatten()
    assert kept.classes == ["ship", "cat"] and torch.equal(kept.images, train.images[chosen])
    assert torch.equal(kept.labels, (train.labels[chosen] == cat).to(kept.labels.dtype))  # ship -> 0, cat -> 1
    splits = prepare(cfg, data_root, torch.device("cpu"))
    assert splits.classes == ["ship", "cat"] and splits.info["train"] + splits.info["val"] == 200
    for part in (splits.train, splits.val, splits.test):
        assert set(part.labels.tolist()) == {0, 1}
    assert torch.bincount(splits.test.labels).tolist() == [50, 50]
    with pytest.raises(CnnlabError, match=r"'dgo' is not a class of this dataset \(did you mean dog\?\); choose"):
        keep_classes(train, ["cat", "dgo"])


def test_input_size_resizes_batches_and_torchvision_weights_set_the_normalisation(data_root, tmp_path, monkeypatch):
    from cnnlab.engine.transfer import input_statistics

    cfg = resnet_config(data={"input_size": 64, "classes": ["cat", "dog"]})
    splits = prepare(cfg, data_root, torch.device("cpu"), input_statistics(cfg))
    x, _ = next(splits.train.batches(torch.Generator().manual_seed(0)))
    assert (
        x.shape[1:] == (3, 64, 64)
        and splits.shape == (3, 64, 64)
        and splits.info["normalised_with"] == "training split"
    )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the statistics are known without the weights' file
    imagenet = resnet_config(model={"pretrained": "imagenet"})
    stats = input_statistics(imagenet)
    assert stats.source == "ResNet18_Weights.IMAGENET1K_V1" and stats.mean == [0.485, 0.456, 0.406]
    info = prepare(imagenet, data_root, torch.device("cpu"), stats).info
    assert info["mean"] == pytest.approx(stats.mean) and info["normalised_with"] == stats.source
    with pytest.raises(CnnlabError, match="resnet18-f37072fd.pth"):
        build_run(imagenet, data_root)  # missing weights stop the run before a folder is made


def test_param_groups_are_kept_as_given():
    net = build_for_classes("resnet18", 4).module
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("fc."))  # layer4 frozen until train.unfreeze_after
    groups = [
        {"params": list(net.fc.parameters()), "lr_mult": 1.0},
        {"params": list(net.layer4.parameters()), "lr_mult": 0.1},
    ]
    optimizer = make_optimizer(net, quick_config().optim, groups=groups)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 15]
    assert [g["lr_mult"] for g in optimizer.param_groups] == [1.0, 0.1]
    assert len(make_optimizer(net, quick_config().optim).param_groups[0]["params"]) == 2
    with pytest.raises(CnnlabError, match="no trainable parameters"):
        make_optimizer(net, quick_config().optim, groups=[{"params": []}])


def test_a_checkpoint_carrying_code_is_refused_in_one_line(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "hook": print}, path)
    with pytest.raises(CnnlabError) as e:
        checkpoint.load(path)
    assert "holds code" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "raw, words",
    [
        (
            {"model": {"name": "deeplabv3_mobilenet_v3_large"}},
            "deeplabv3_mobilenet_v3_large is a segmentation model: it needs task: segment, not classify",
        ),
        (
            {"task": "segment", "data": {"dataset": "pennfudan"}, "model": {"name": "resnet18"}},
            "resnet18 is a classification model",
        ),
        ({"model": {"name": "simplenn", "pretrained": "imagenet"}}, "model.pretrained: for torchvision models"),
        (
            {"model": {"name": "simplenn"}, "train": {"unfreeze_after": 1}},
            "train.unfreeze_after: for torchvision models",
        ),
        ({"model": {"name": "simplenn", "new_head": True}}, "model.new_head: for torchvision models"),
        (
            {"model": {"name": "resnet18", "dropout": 0.5, "activation": "elu"}},
            "model.activation, model.dropout: options of zoo and spec models",
        ),
        (
            {"model": {"name": "resnet18", "bn_weight_frozen": True}},
            "model.bn_weight_frozen: options of zoo and spec models",
        ),
        ({"model": {"name": "resnet18", "trainable": "head"}}, "model.trainable is all, last or a list"),
        ({"model": {"name": "resnet18", "trainable": []}}, "model.trainable is all, last or a list"),
        ({"model": {"name": "resnet18", "trainable": "last"}, "train": {"unfreeze_after": 2}}, "nothing to unfreeze"),
        (
            {"task": "segment", "data": {"dataset": "pennfudan", "input_size": 64}, "model": {"name": "seg_unet"}},
            "data.input_size is for task: classify",
        ),
        ({"data": {"classes": ["cat", "cat"]}, "model": {"name": "resnet18"}}, "names a class twice"),
        (
            {"model": {"name": "resnet19"}},
            "torchvision's classification and segmentation models are accepted by their names, e.g. resnet18",
        ),
    ],
)
def test_config_refuses_what_does_not_fit(raw, words):
    from cnnlab.config import validate

    with pytest.raises(CnnlabError) as e:
        validate(raw, "test")
    assert words in str(e.value)


@pytest.mark.parametrize("momentum, expected", [(None, {0.01, 0.1}), (0.3, {0.3})])
def test_bn_momentum_reaches_a_torchvision_models_batch_norms(momentum, expected):
    """torchvision's MobileNets keep batch norm's running statistics with momentum 0.01 (about the last 100 steps;
    DeepLab's head has torch's 0.1): a short run from scratch then evaluates with statistics of much earlier weights.
    model.bn_momentum sets every one."""
    from cnnlab.config import validate
    from cnnlab.engine.transfer import build_transfer

    cfg = validate(
        {
            "task": "segment",
            "data": {"dataset": "pennfudan"},
            "model": {"name": "deeplabv3_mobilenet_v3_large", "bn_momentum": momentum},
        },
        "test",
    )
    net = build_transfer(cfg, (3, 64, 64), 2, load_weights=False, download=False).net.module
    momenta = {m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == expected
