"""The speed tricks (issue 13) on real CIFAR-10 slices: whitening, identity convolutions, weight averages,
test-time augmentation, alternating flips, reflected shifts, rates per N examples, fixed batch shapes, sparse
evaluation, startup and time-to-accuracy in summary.json, and the GPU benchmark refusing to run without a GPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from cnnlab.config import key_problem, validate
from cnnlab.data import channel_statistics, load_images
from cnnlab.data.augment import random_crop
from cnnlab.data.loader import DeviceBatches
from cnnlab.engine import checkpoint
from cnnlab.engine.average import WeightAverage
from cnnlab.engine.run_setup import build_run
from cnnlab.engine.evaluate import evaluate, tta_outputs
from cnnlab.engine.startup import warm_up
from cnnlab.engine.run_record import time_to
from cnnlab.engine.trainer import Progress
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.init import initialise, patch_covariance, whiten_first_conv
from cnnlab.optimizers import full_rate, make_optimizer, torch_weight_decay
from cnnlab.runner import start_run
from cnnlab.sweep.collect import Run, group
from cnnlab.sweep.compare import analyse
from cnnlab.sweep.grid import parse_grid

ROOT = Path(__file__).resolve().parents[1]
SPEC = "conv 12 k2 -> gelu -> conv 16 k3 p1 bias=0 -> maxpool 2 -> bn -> gelu -> maxpool 3 -> flatten -> dense classes"


def cifar_config(**sections):
    """A small real-data config: a whitening-ready network on a class-balanced slice of CIFAR-10, one epoch."""
    raw = {
        "name": "speed",
        "data": {"dataset": "cifar10", "train_subset": 500, "test_subset": 200, "val_fraction": 0.2},
        "model": {"spec": SPEC},
        "optim": {"lr": 0.05, "momentum": 0.9},
        "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 128},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return validate(raw, "test config")


@pytest.fixture(scope="module")
def cifar_images(data_root) -> torch.Tensor:
    """2,000 real CIFAR-10 training images (a seeded random draw: the files hold them class by class), normalised
    per channel."""
    train, _, _ = load_images(cifar_config().data, data_root)
    x = train.images[torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))[:2000]].float() / 255
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)


@pytest.fixture(scope="module")
def cifar_uint8(data_root) -> torch.Tensor:
    """The real CIFAR-10 training images of cifar_config's slice, as stored (uint8)."""
    train, _, _ = load_images(cifar_config().data, data_root)
    return train.images[:5000]


# ---- model initialisation -----------------------------------------------------------------------------------


def test_the_whitening_layer_whitens_real_patches(cifar_images):
    conv = torch.nn.Conv2d(3, 24, 2)
    net = torch.nn.Sequential(conv)
    assert whiten_first_conv(net, cifar_images, eps=1e-7) is conv and not conv.weight.requires_grad
    out = F.conv2d(cifar_images, conv.weight)  # no bias: the whitening itself
    first, second = out[:, :12], out[:, 12:]
    assert torch.equal(second, -first)  # each filter with its negative
    cov = patch_covariance(first, 1)  # 1x1 "patches": the channels' second moments over every position
    assert torch.allclose(cov, torch.eye(12, dtype=cov.dtype), atol=2e-3)
    # with the default eps every channel's variance is lambda / (lambda + eps):
    # at most 1, and near 1 for the strong ones
    whiten_first_conv(net, cifar_images, eps=5e-4)
    variances = patch_covariance(F.conv2d(cifar_images, conv.weight[:12]), 1).diagonal()
    assert variances.max() <= 1 and variances[:3].min() > 0.99


def test_whitening_refuses_a_first_conv_it_cannot_fill():
    with pytest.raises(CnnlabError, match=r"at most 2\*C\*k\*k = 24"):
        whiten_first_conv(torch.nn.Sequential(torch.nn.Conv2d(3, 32, 2)), torch.randn(4, 3, 8, 8), 5e-4)


def test_dirac_convolutions_pass_their_input_channels_through():
    model = create_model(
        cifar_config(model={"spec": "conv 5 k3 p1 -> flatten -> dense 3", "init": "dirac"}).model, (3, 8, 8), 3
    )
    x = torch.randn(2, 3, 8, 8)
    out = model.conv1(x)
    assert torch.equal(out[:, :3], x)  # the input channels, unchanged
    assert out[:, 3:].abs().sum() > 0  # the other filters keep torch's initialisation
    grouped = torch.nn.Conv2d(4, 6, 3, padding=1, groups=2)  # per group: 2 inputs -> 3 outputs
    initialise(torch.nn.Sequential(grouped), "dirac")
    h = torch.randn(2, 4, 8, 8)
    y = grouped(h)
    assert torch.equal(y[:, 0:2], h[:, 0:2]) and torch.equal(y[:, 3:5], h[:, 2:4])


def test_batch_norm_momentum_and_frozen_scales_reach_every_norm_and_the_optimizer():
    cfg = cifar_config(model={"bn_momentum": 0.4, "bn_weight_frozen": True}, optim={"bn_bias_lr_mult": 8})
    model = create_model(cfg.model, (3, 32, 32), 10)
    assert model.bn1.momentum == 0.4 and not model.bn1.weight.requires_grad
    groups = make_optimizer(model, cfg.optim, 64).param_groups
    shifts, rest = groups
    assert shifts["params"] == [model.bn1.bias] and shifts["lr_mult"] == 8 and rest["lr_mult"] == 1
    assert all(p is not model.bn1.weight for g in groups for p in g["params"])


def test_rates_and_decay_per_1024_examples_scale_with_the_batch():
    cfg = cifar_config(optim={"lr": 2.0, "lr_per": 1024, "weight_decay": 0.004, "bn_bias_lr_mult": 4}).optim
    assert full_rate(cfg, 512) == 1.0 and full_rate(cfg, 2048) == 4.0
    for batch in (256, 1024):  # a step at the full rate decays the weights by weight_decay * batch / lr_per
        assert full_rate(cfg, batch) * torch_weight_decay(cfg) == pytest.approx(0.004 * batch / 1024)
    groups = make_optimizer(create_model(cifar_config().model, (3, 32, 32), 10), cfg, 256).param_groups
    assert [g["weight_decay"] * g["lr_mult"] for g in groups] == pytest.approx([0.002, 0.002])  # same decay per step
    plain = cifar_config(optim={"lr": 0.1, "weight_decay": 0.01}).optim
    assert full_rate(plain, 512) == 0.1 and torch_weight_decay(plain) == 0.01


# ---- data ---------------------------------------------------------------------------------------------------


def batches_of(images, **options):
    labels = torch.arange(len(images))  # each label names its image
    return DeviceBatches(
        images, labels, 16, torch.device("cpu"), torch.ones(3), torch.zeros(3), channels_last=False, **options
    )


def mirrored_ones(batches, epoch: int, originals: torch.Tensor) -> torch.Tensor:
    """Which images of the split come out mirrored in `epoch` (shuffled order undone through the labels)."""
    flipped = torch.zeros(len(originals), dtype=torch.bool)
    for x, y in batches.batches(torch.Generator().manual_seed(epoch), epoch=epoch):
        assert all(
            torch.equal(x[i], originals[y[i]].float()) != torch.equal(x[i], originals[y[i]].flip(2).float())
            for i in range(len(y))
        )
        flipped[y] = torch.tensor([torch.equal(x[i], originals[y[i]].flip(2).float()) for i in range(len(y))])
    return flipped


def test_alternating_flips_mirror_a_seeded_half_then_the_other_half(data_root):
    train, _, _ = load_images(cifar_config().data, data_root)
    originals = train.images[:100]
    batches = batches_of(originals, flip="alternating", shuffle=True, seed=3)
    odd, even = mirrored_ones(batches, 1, originals), mirrored_ones(batches, 2, originals)
    assert torch.equal(odd, batches.flipped_first) and torch.equal(even, ~odd)
    assert 30 < odd.sum() < 70
    assert torch.equal(mirrored_ones(batches, 3, originals), odd)
    assert torch.equal(batches_of(originals, flip="alternating", shuffle=True, seed=3).flipped_first, odd)
    assert not torch.equal(batches_of(originals, flip="alternating", shuffle=True, seed=4).flipped_first, odd)


def test_translate_fills_the_border_by_reflection(data_root):
    train, _, _ = load_images(cifar_config().data, data_root)
    images = train.images[:64]
    masks = torch.randint(0, 3, (64, 32, 32), dtype=torch.uint8)
    out, out_masks = random_crop(images, 2, torch.Generator().manual_seed(0), masks, reflect=True)
    padded, padded_masks = (
        F.pad(images, (2,) * 4, mode="reflect"),
        F.pad(masks[:, None], (2,) * 4, mode="reflect")[:, 0],
    )
    shifts = []
    for i in range(64):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
            and torch.equal(out_masks[i], padded_masks[i, dy : dy + 32, dx : dx + 32])
        ]
        assert found, f"image {i} is no reflected shift of its original"
        shifts += found
    assert len({s for s in shifts}) > 10  # shifts of every kind, the reflected border included


def test_drop_last_serves_one_batch_shape_and_evaluation_pads_without_scoring_the_padding(data_root):
    cfg = cifar_config(train={"drop_last": True, "batch_size": 64, "eval_batch_size": 64})
    built = build_run(cfg, data_root)
    assert {x.shape[0] for x, _ in built.data.train.batches(torch.Generator())} == {64}
    assert len(built.data.train) == 400 // 64 and built.data.train.images_per_epoch == 384
    shapes = [(x.shape[0], len(y)) for x, y in built.data.test.batches(pad_last=True)]
    assert shapes == [(64, 64)] * 3 + [(64, 8)]  # 200 test images
    padded = evaluate(built, built.data.test)
    built.cfg = cifar_config(train={"batch_size": 64, "eval_batch_size": 64})
    assert evaluate(built, built.data.test) == pytest.approx(padded)


# ---- evaluation ---------------------------------------------------------------------------------------------


def test_tta_averages_the_model_over_mirrored_and_shifted_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(tta_outputs(model, x, "flip"), (model(x) + model(x.flip(3))) / 2)
        shifted = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, shifted[:, :, :8, :8], shifted[:, :, 2:, 2:]]
        mirrored = [(model(v) + model(v.flip(3))) / 2 for v in views]
        assert torch.allclose(
            tta_outputs(model, x, "flip_translate"), mirrored[0] / 2 + (mirrored[1] + mirrored[2]) / 4
        )
        per_pixel = torch.nn.Conv2d(3, 2, 1)  # per-pixel outputs are mirrored back before averaging
        assert torch.allclose(tta_outputs(per_pixel, x, "flip"), per_pixel(x), atol=1e-6)


def test_the_weight_average_follows_the_lookahead_schedule():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, every=5, decay=0.95, power=3, write_back=True, total_steps=100)
    assert average.pull(50) == pytest.approx(0.95**5 * 0.5**3)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model, 4)  # not due
    assert torch.equal(model.weight, torch.ones(1, 2))
    average.update(model, 50)
    expected = 1 - 0.95**5 * 0.5**3
    assert torch.allclose(model.weight, torch.full((1, 2), expected))  # written back
    with torch.no_grad():
        model.weight.fill_(3.0)
    with average.applied(model):
        assert torch.allclose(model.weight, torch.full((1, 2), expected))
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))


@pytest.mark.parametrize("averaging", [{"train": {"ema": 0.9}}, {"optim": {"lookahead": {"every": 3}}}])
def test_the_average_is_what_is_evaluated_and_kept(data_root, tmp_path, averaging):
    run = start_run(cifar_config(**averaging), tmp_path, data_root)
    last, best = checkpoint.load(run.last_path), checkpoint.load(run.best_path)
    raw, kept = last["model"], best["model"]
    assert any(not torch.equal(raw[k], kept[k]) for k in raw if raw[k].is_floating_point())
    assert all(torch.equal(kept[k], v) for k, v in last["average"].items())
    built = build_run(run.config(), data_root)
    built.model.load_state_dict(kept)
    row = run.metrics()[-1]
    again = evaluate(built, built.data.val)
    assert (again["acc"], again["loss"]) == (row["val_acc"], pytest.approx(row["val_loss"], rel=1e-5))


# ---- the loop -----------------------------------------------------------------------------------------------


def test_whitening_stays_frozen_and_its_bias_trains_only_in_its_epochs(data_root, tmp_path):
    biases = []

    def record(row):
        biases.append(checkpoint.load(next(tmp_path.rglob("last.pt")))["model"]["conv1.bias"])

    cfg = cifar_config(model={"whiten": True, "whiten_bias_epochs": 1}, train={"epochs": 2})
    start = build_run(cfg, data_root).model.state_dict()
    run = start_run(cfg, tmp_path, data_root, Progress(epoch_end=record))
    final = checkpoint.load(run.last_path)["model"]
    assert torch.equal(final["conv1.weight"], start["conv1.weight"])  # frozen
    assert not torch.equal(biases[0], start["conv1.bias"]) and torch.equal(biases[1], biases[0])
    assert run.summary().to_dict()["trainable_params"] < run.summary().to_dict()["params"]


def test_eval_every_skips_evaluations_and_the_report_and_compare_cope(data_root, tmp_path):
    run = start_run(
        cifar_config(train={"epochs": 3, "eval_every": 2}, schedule={"name": "cosine"}), tmp_path, data_root
    )
    rows = run.metrics()
    assert ["val_acc" in r for r in rows] == [False, True, True] and ["test_acc" in r for r in rows] == [
        False,
        True,
        True,
    ]
    assert all("train_acc" in r for r in rows)
    summary = run.summary().to_dict()
    assert summary["best_epoch"] in (2, 3) and summary["final"] == rows[-1]
    report = (run.path / "report.md").read_text()
    assert "| 1 |" in report and " - |" in report  # the skipped epoch's row shows its missing values
    result = analyse([run.path], ["test_acc"])
    assert result  # a comparison of one variant still reads every metric


def test_summary_records_startup_and_time_to_targets(data_root, tmp_path):
    run = start_run(cifar_config(train={"epochs": 2, "targets": [0.05, 0.99]}), tmp_path, data_root)
    summary, rows = run.summary().to_dict(), run.metrics()
    assert summary["startup_seconds"] > 0
    assert summary["time_to"] == {"0.05": rows[0]["train_seconds"], "0.99": None}
    assert summary["train_seconds"] == pytest.approx(sum(r["train_seconds"] for r in rows))
    report = (run.path / "report.md").read_text()
    assert "| training time (s) until test accuracy 0.99 | not reached |" in report and "| startup (s)" in report


def test_a_run_starts_without_importing_what_only_its_report_needs(data_root):
    """matplotlib, scipy and torchvision cost about a second to import together; a spec network's run reaches its
    first step without them (the report imports them after training)."""
    code = (
        "import sys\n"
        "from cnnlab.engine.run_setup import build_run\n"
        "from cnnlab.runner import start_run\n"
        "from cnnlab.config import validate\n"
        f"cfg = validate({cifar_config(model={'whiten': True}).model_dump(mode='json')!r}, 'test')\n"
        f"build_run(cfg, __import__('pathlib').Path({str(data_root)!r}))\n"
        "print(sorted(m for m in ('matplotlib', 'scipy', 'torchvision') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_channel_statistics_are_exact_from_the_histogram(cifar_uint8):
    mean, std = channel_statistics(cifar_uint8)
    pixels = cifar_uint8.transpose(0, 1).reshape(3, -1).double() / 255
    assert torch.allclose(mean.double(), pixels.mean(1), atol=1e-6)
    assert torch.allclose(std.double(), pixels.std(1), atol=1e-6)


def test_time_to_counts_training_seconds_of_evaluated_epochs_only():
    history = [
        {"epoch": 1, "train_seconds": 2.0},
        {"epoch": 2, "train_seconds": 3.0, "test_acc": 0.8},
        {"epoch": 3, "train_seconds": 1.5, "test_acc": 0.95},
    ]
    assert time_to(history, [0.75, 0.9, 0.99]) == {"0.75": 5.0, "0.9": 6.5, "0.99": None}


def test_warm_up_leaves_weights_statistics_and_gradients_as_they_were(data_root):
    built = build_run(cifar_config(model={"whiten": True}, train={"tta": "flip"}), data_root)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    warm_up(built)
    assert all(torch.equal(before[k], v) for k, v in built.model.state_dict().items())
    assert all(p.grad is None for p in built.model.parameters())


# ---- config and benchmark -----------------------------------------------------------------------------------


def test_the_new_keys_refuse_what_does_not_fit():
    assert cifar_config(data={"augment": {"flip": True}}).data.augment.flip is True  # flip: true still means random
    with pytest.raises(CnnlabError, match="choose one"):
        cifar_config(train={"ema": 0.99}, optim={"lookahead": {"every": 5}})
    with pytest.raises(CnnlabError, match="flip_translate is for task: classify"):
        validate(
            {
                "task": "segment",
                "data": {"dataset": "pennfudan"},
                "model": {"name": "seg_unet"},
                "train": {"tta": "flip_translate"},
            },
            "test",
        )
    with pytest.raises(CnnlabError, match="train.targets are accuracies"):
        cifar_config(train={"targets": [75]})


def test_a_sweep_can_turn_lookahead_off_and_on_and_compare_tells_them_apart():
    (axis,) = parse_grid(["optim.lookahead=null,{every: 5}"])
    assert axis.values == [None, {"every": 5}]
    assert key_problem("optim.lookahead") is None and "is a section" in key_problem("optim")
    on = {"optim.lookahead.every": 5, "optim.lookahead.decay": 0.95, "seed": 0}
    runs = [Run(Path(f"r{i}"), config, {}, []) for i, config in enumerate([on, {"optim.lookahead": None, "seed": 0}])]
    variants = group(runs, ["optim.lookahead"])
    assert [v.config for v in variants] == [{"optim.lookahead": None}, {"optim.lookahead": {"every": 5, "decay": 0.95}}]


def test_vs_airbench_says_it_needs_a_gpu_and_stops(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import vs_airbench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["vs_airbench.py", "--airbench", str(tmp_path / "airbench94.py")])
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        vs_airbench.main()
    assert not any(tmp_path.iterdir())
