"""Per-pixel tasks on real data: palettes, greyscale, model shapes, aligned augmentation, training runs."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import validate
from cnnlab.data import load_images, only_class
from cnnlab.data.augment import IGNORE, random_crop, random_flip, random_zoom
from cnnlab.data.colour import decode, fit_palette, quantise, to_grey
from cnnlab.engine.tasks import PixelTask, soft_dice_loss
from cnnlab.errors import CnnlabError
from cnnlab.models.spec_builder import ModelOptions, build
from cnnlab.models.spec import parse_spec
from cnnlab.models.zoo import ZOO
from cnnlab.runner import start_run
from tests.conftest import placements


def cfg_of(raw):
    return validate(raw, "test")


@pytest.fixture(scope="module")
def horses(data_root):
    train, _, _ = load_images(cfg_of({"model": {"name": "simplenn"}, "data": {"dataset": "cifar10"}}).data, data_root)
    return only_class(train, "horse")


@pytest.fixture(scope="module")
def pennfudan(data_root):
    cfg = cfg_of({"task": "segment", "model": {"name": "seg_unet"}, "data": {"dataset": "pennfudan", "image_size": 96}})
    images, _, _ = load_images(cfg.data, data_root)
    return images


def test_palette_and_quantisation_on_real_horses(horses):
    images = horses.images[:500]
    assert (
        len(horses) == 5000 and set(horses.labels.tolist()) == {0} and horses.classes == ["horse"]
    )  # kept, relabelled
    palette = fit_palette(images, 12, seed=0)
    assert palette.shape == (12, 3) and torch.equal(palette, fit_palette(images, 12, seed=0))
    idx = quantise(images[:20], palette)
    assert idx.shape == (20, 32, 32) and idx.dtype == torch.uint8
    # nearest colour, checked by brute force in numpy on every pixel of one image
    pix = images[3].permute(1, 2, 0).reshape(-1, 3).numpy().astype(np.float64)
    expected = ((pix[:, None, :] - palette.numpy()[None, :, :]) ** 2).sum(-1).argmin(1)
    assert (idx[3].flatten().numpy() == expected).all()
    # k-means colours beat colours picked at random from the same pixels
    error = ((palette[idx.long()].permute(0, 3, 1, 2) - images[:20].float()) ** 2).mean()
    rand = (
        images[:20]
        .permute(0, 2, 3, 1)
        .reshape(-1, 3)[torch.randperm(20 * 1024, generator=torch.Generator().manual_seed(1))[:12]]
        .float()
    )
    rand_error = ((rand[quantise(images[:20], rand).long()].permute(0, 3, 1, 2) - images[:20].float()) ** 2).mean()
    assert error < 0.7 * rand_error


def test_greyscale_matches_pillow(horses):
    img = horses.images[0]
    pil = np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L"), dtype=np.int16)
    ours = to_grey(img[None])[0, 0].numpy().astype(np.int16)
    assert np.abs(pil - ours).max() <= 1


def test_decode_mode_and_annealed_mean():
    palette = torch.tensor([[0.0, 0, 0], [255, 0, 0], [0, 0, 255]])
    logits = torch.zeros(1, 3, 1, 1)
    logits[0, 1] = 2.0
    logits[0, 2] = 1.0
    assert torch.allclose(decode(logits, palette)[0, :, 0, 0], torch.tensor([1.0, 0, 0]))
    hot, cold = decode(logits, palette, 1.0)[0, :, 0, 0], decode(logits, palette, 0.05)[0, :, 0, 0]
    p = torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0)
    assert torch.allclose(hot, torch.tensor([p[1], 0, p[2]]), atol=1e-6)  # T = 1: the plain mean
    assert cold[0] > 0.99  # T -> 0: the mode


@pytest.mark.parametrize("name", ["colour_cnn", "colour_unet"])
@pytest.mark.parametrize("size", [32, 64])
def test_colour_models_keep_the_image_size(name, size):
    entry = ZOO[name]
    net = build(parse_spec(entry.spec), (1, size, size), {"NF": 8, "NC": 24, "k": 3}, entry.options)
    assert net(torch.randn(2, 1, size, size)).shape == (2, 24, size, size)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transposed"])
def test_seg_unet_upsampling_choices(upsample):
    entry = ZOO["seg_unet"]
    net = build(
        parse_spec(entry.spec), (3, 64, 64), {"NF": 4, "classes": 2}, ModelOptions(upsample=upsample, activation="elu")
    )
    kinds = {type(m).__name__ for m in net.children()}
    assert ("ConvTranspose2d" in kinds) == (upsample == "transposed") and "ELU" in kinds
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 2, 64, 64)


def test_mask_moves_with_its_photo(pennfudan):
    photo, mask = pennfudan.images[5], pennfudan.labels[5]
    assert mask.dtype == torch.uint8 and set(mask.unique().tolist()) == {0, 1}
    images, masks = photo.expand(16, -1, -1, -1).contiguous(), mask.expand(16, -1, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    out_images, out_masks = random_crop(images, 6, gen, masks)
    out_images, out_masks = random_flip(out_images, gen, out_masks)
    padded_mask = torch.nn.functional.pad(mask, (6, 6, 6, 6), value=IGNORE)
    seen = []
    for img, m in zip(out_images, out_masks):
        found = placements(img, photo[None], 6)
        assert len(found) == 1
        _, dy, dx, flipped = found[0]
        window = padded_mask[dy : dy + 96, dx : dx + 96]
        assert torch.equal(window.flip(1) if flipped else window, m)  # the same window, the same mirror
        seen.append(found[0][1:])
    assert (
        sum((dy, dx) != (6, 6) for dy, dx, _ in seen) > 12 and len({s[:2] for s in seen}) > 8
    )  # moved, to many places
    assert 0 < sum(f for _, _, f in seen) < 16  # some mirrored, some not
    assert any((m == IGNORE).any() for m in out_masks)  # the border a shift brings in carries no label


def test_zoom_enlarges_photo_and_mask_alike(pennfudan):
    photo, mask = pennfudan.images[5], pennfudan.labels[5]
    images = photo.expand(64, -1, -1, -1).clone()
    images[:, 0] = mask * 255  # the mask drawn into the red channel: where it lands shows where the photo went
    images[:, 1] = torch.arange(96, dtype=torch.uint8) * 2  # a horizontal ramp: its slope is 2 / the factor
    gen = torch.Generator().manual_seed(0)
    out_images, out_masks = random_zoom(images, 2.0, gen, mask.expand(64, -1, -1).contiguous())
    assert out_images.shape == images.shape and out_images.dtype == torch.uint8 and out_masks.shape == (64, 96, 96)
    assert not (out_masks == IGNORE).any()  # the window stays inside the image: no border to fill
    agree = ((out_images[:, 0] > 127) == (out_masks == 1)).float().mean(dim=(1, 2))
    assert agree.min() > 0.98  # bilinear photo and nearest mask: the same window, apart from edge pixels
    slope = (out_images[:, 1, :, 80].float() - out_images[:, 1, :, 16].float()).mean(1) / 64
    assert slope.min() >= 1.0 - 0.02 and slope.max() <= 2.0 + 0.02  # enlarged by a factor within [1, 2]
    assert slope.max() - slope.min() > 0.5  # by many factors, not one
    share = out_masks.float().mean(dim=(1, 2))
    assert share.std() > 0.02  # windows on different parts of the photo
    same_images, same_masks = random_zoom(images, 1.0, gen, mask.expand(64, -1, -1))
    assert same_images is images  # zoom 1 is off


def test_iou_tally_against_hand_counts():
    task = PixelTask("segment", 2)
    tally = task.new_tally("cpu")
    targets = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, IGNORE]]])
    pred = torch.tensor([[[1, 0, 0, 1], [1, 0, 1, 1]]])
    outputs = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    task.update(tally, outputs, targets, torch.tensor(0.5))
    r = task.result(tally)
    # 7 labelled pixels; correct: (0,0) (0,2) (1,0) (1,1) -> 4
    assert r["acc"] == pytest.approx(4 / 7)
    # person: truth {00, 01, 10}, predicted {00, 03, 10, 12}: intersection 2, union 5
    assert r["iou"] == pytest.approx(2 / 5)
    # background: truth {02, 03, 11, 12}, predicted {01, 02, 11}: intersection 2, union 5
    assert r["miou"] == pytest.approx((2 / 5 + 2 / 5) / 2)


def test_soft_dice_against_hand_counts():
    targets = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, IGNORE]]])
    pred = torch.tensor([[[1, 0, 0, 1], [1, 0, 1, 0]]])  # the IGNORE pixel predicted background: it must not count
    sure = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float() * 40.0  # softmax: 0 or 1
    # person: truth 3 pixels, predicted 4 of the labelled, overlap 2 -> Dice 2*2/(3+4)
    assert soft_dice_loss(sure, targets).item() == pytest.approx(1 - 4 / 7, abs=1e-6)
    pred[0, 1, 3] = 1  # predicting person where nothing is labelled changes nothing
    sure = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float() * 40.0
    assert soft_dice_loss(sure, targets).item() == pytest.approx(1 - 4 / 7, abs=1e-6)
    right = torch.nn.functional.one_hot(targets.where(targets != IGNORE, 0), 2).permute(0, 3, 1, 2).float() * 40
    assert soft_dice_loss(right, targets).item() == pytest.approx(0.0, abs=1e-6)
    unsure = torch.zeros(1, 2, 2, 4, requires_grad=True)  # p = 1/2 everywhere: Dice 2*1.5/(3.5+3)
    loss = soft_dice_loss(unsure, targets)
    assert loss.item() == pytest.approx(1 - 3 / 6.5)
    loss.backward()
    assert unsure.grad[0, 1, 0, 0] < 0 < unsure.grad[0, 1, 0, 2]  # raise person where it is, lower it elsewhere
    assert unsure.grad[0, :, 1, 3].abs().sum() == 0


def test_dice_adds_to_training_loss_only():
    task = PixelTask("segment", 2, dice=0.5)
    targets = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0]]])
    outputs = torch.randn(1, 2, 2, 4)
    plain = torch.nn.functional.cross_entropy(outputs, targets)
    assert task.loss(outputs, targets, smoothed=False).item() == pytest.approx(plain.item())
    expected = plain + 0.5 * soft_dice_loss(outputs, targets)
    assert task.loss(outputs, targets).item() == pytest.approx(expected.item())
    with pytest.raises(CnnlabError, match="train.dice is for task: segment"):
        cfg_of({"model": {"name": "simplenn"}, "train": {"dice": 1.0}})


def test_colourize_run_end_to_end(data_root, tmp_path):
    cfg = cfg_of(
        {
            "name": "colour",
            "task": "colourize",
            "data": {
                "dataset": "cifar10",
                "train_subset": 300,
                "test_subset": 60,
                "val_fraction": 0.2,
                "palette_size": 8,
            },
            "model": {"name": "colour_unet", "args": {"NF": 8}},
            "optim": {"name": "adam", "lr": 0.003},
            "train": {"epochs": 2, "batch_size": 50},
            "figures": {"count": 3, "temperature": 0.38},
        }
    )
    run = start_run(cfg, tmp_path, data_root)
    summary, rows = run.summary().to_dict(), run.metrics()
    assert summary["status"] == "completed" and summary["task"] == "colourize"
    assert summary["expected_initial_loss"] == pytest.approx(math.log(8)) and summary["initial_loss_ok"]
    assert rows[-1]["val_loss"] < summary["initial_loss"] and rows[-1]["val_acc"] > 1 / 8
    assert summary["data"]["train"] == 240 and summary["input_shape"] == [1, 32, 32]
    palette = (run.path / "palette.json").read_text()
    assert '"colour_class": "horse"' in palette
    assert [f["file"] for f in summary["figures"]] == ["figures/colourize-val.png", "figures/colourize-test.png"]
    html = (run.path / "report.html").read_text()
    assert "Predictions" in html and html.count("data:image/png;base64,") == 2  # the curves are vector (SVG)


def test_segment_run_end_to_end(data_root, tmp_path):
    cfg = cfg_of(
        {
            "name": "seg",
            "task": "segment",
            "data": {
                "dataset": "pennfudan",
                "image_size": 64,
                "val_fraction": 0.15,
                "augment": {"flip": True, "crop_padding": 4},
            },
            "model": {"name": "seg_unet", "args": {"NF": 4}, "upsample": "transposed"},
            "optim": {"name": "adam", "lr": 0.01},
            "train": {"epochs": 2, "batch_size": 16},
        }
    )
    run = start_run(cfg, tmp_path, data_root)
    summary = run.summary().to_dict()
    assert summary["status"] == "completed" and summary["monitor"] == "val_iou"
    assert summary["data"]["test"] == 34 and summary["data"]["train"] + summary["data"]["val"] == 136
    for key in ("train_iou", "val_iou", "test_iou", "train_miou", "val_miou", "test_miou", "test_acc"):
        assert 0 <= summary["final"][key] <= 1
    assert summary["test_iou_at_best"] is not None
    iou = summary["test_class_iou_at_best"]  # from the best checkpoint, evaluated again at the end
    assert list(iou) == ["background", "person"] and iou["person"] == pytest.approx(summary["test_iou_at_best"])
    assert summary["test_miou_at_best"] == pytest.approx((iou["background"] + iou["person"]) / 2)
    assert summary["sparsity"]["total"]["weights"] > 0
    assert (run.figures / "segment-test.png").exists()
    html = (run.path / "report.html").read_text()
    assert (
        "test IoU" in html
        and "IoU per class (test split, best checkpoint)" in html
        and "Sparsity of the weights" in html
    )


def test_segment_needs_masks():
    with pytest.raises(Exception, match="segment needs a dataset with masks"):
        cfg_of({"task": "segment", "model": {"name": "seg_unet"}, "data": {"dataset": "cifar10"}})
