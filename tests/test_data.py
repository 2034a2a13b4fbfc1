"""Real data through the real pipeline: sources, tensor cache, splits, batched augmentation, errors."""

import gzip
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from cnnlab.config import validate
from cnnlab.data import load_images, prepare, split_indices
from cnnlab.data.augment import random_crop, random_flip
from cnnlab.data.loader import DeviceBatches
from cnnlab.data.registry import CIFAR10_CLASSES, FASHION_CLASSES
from cnnlab.data.sources import download, locate
from cnnlab.errors import CnnlabError
from tests.conftest import placements


def data_cfg(**data):
    return validate({"model": {"name": "simplenn"}, "data": data}, "test").data


def test_fashion_mnist_from_idx_files(data_root):
    train, test, source = load_images(data_cfg(dataset="fashion_mnist"), data_root)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.classes == FASHION_CLASSES
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_cifar10_from_archive(data_root):
    train, test, source = load_images(data_cfg(dataset="cifar10"), data_root)
    assert source.name.endswith(".tar.gz")
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.classes == CIFAR10_CLASSES
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert 100 < train.images.float().mean() < 150  # real photographs, not zeros


def test_subsets_and_splits_are_balanced_seeded_and_disjoint(data_root):
    cfg = data_cfg(dataset="cifar10", train_subset=1000, test_subset=200, val_fraction=0.2, split_seed=3)
    train, test, _ = load_images(cfg, data_root)
    tr, va, te = split_indices(cfg, train, test)
    assert len(tr) == 800 and len(va) == 200 and len(te) == 200
    assert torch.bincount(train.labels[va]).tolist() == [20] * 10
    assert torch.bincount(test.labels[te]).tolist() == [20] * 10
    assert not set(tr.tolist()) & set(va.tolist())
    again = split_indices(cfg, train, test)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again))
    other = split_indices(data_cfg(dataset="cifar10", train_subset=1000, val_fraction=0.2, split_seed=4), train, test)
    assert not torch.equal(va, other[1])


def test_augmentation_keeps_labels_and_shapes_on_real_images(data_root):
    train, _, _ = load_images(data_cfg(dataset="cifar10"), data_root)
    images, labels = train.images[:64], train.labels[:64]
    batches = DeviceBatches(
        images, labels, 16, torch.device("cpu"), torch.ones(3), torch.zeros(3), crop_padding=4, flip=True, shuffle=True
    )
    seen = []
    for x, y in batches.batches(torch.Generator().manual_seed(0)):
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and torch.equal(x, x.round())
        for img, label in zip(x, y):
            # the augmented image is a window (maybe mirrored) of exactly one original, and carries its label
            found = placements(img, images, 4)
            assert len(found) == 1 and labels[found[0][0]] == label
            seen.append(found[0])
    assert sorted(i for i, _, _, _ in seen) == list(range(64))  # every image once
    shifts = [(dy, dx) for _, dy, dx, _ in seen]
    assert sum(s != (4, 4) for s in shifts) > 48 and len(set(shifts)) > 30  # moved, to many places
    assert 16 < sum(f for _, _, _, f in seen) < 48  # about half mirrored


def test_crop_and_flip_are_seeded_and_do_what_they_say():
    gen = torch.Generator().manual_seed(0)
    # 64 images of 5x5 pixels, each pixel of an image a distinct non-zero value: a window tells its offset
    x = torch.stack([torch.randperm(255, generator=gen)[:25] + 1 for _ in range(64)]).to(torch.uint8).view(64, 1, 5, 5)
    a, _ = random_crop(x, 2, torch.Generator().manual_seed(5))
    b, _ = random_crop(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, random_crop(x, 2, torch.Generator().manual_seed(6))[0])
    offsets = []
    for i, out in enumerate(a):
        found = placements(out, x[i : i + 1], 2)
        assert len(found) == 1 and not found[0][3]  # one unmirrored window of its own image
        _, dy, dx, _ = found[0]
        offsets.append((dy, dx))
        # by hand: pixel (r, c) of the crop is pixel (r + dy - 2, c + dx - 2) of the original, zero outside it
        for r in range(5):
            for c in range(5):
                sr, sc = r + dy - 2, c + dx - 2
                assert out[0, r, c] == (x[i, 0, sr, sc] if 0 <= sr < 5 and 0 <= sc < 5 else 0)
    # every offset of the padded image is drawn: rows and columns shift by -2 .. +2
    assert {dy for dy, _ in offsets} == {dx for _, dx in offsets} == set(range(5))
    assert sum(o == (2, 2) for o in offsets) < 10  # the identity is one offset of 25, not the rule
    flipped, _ = random_flip(x, torch.Generator().manual_seed(1))
    mirrored = []
    for orig, out in zip(x, flipped):
        assert torch.equal(out, orig) or torch.equal(out, orig.flip(2))
        mirrored.append(torch.equal(out, orig.flip(2)))
        assert torch.equal(out[0, :, 0], orig[0, :, 4]) == mirrored[-1]  # the first column is the last one, mirrored
    assert 16 < sum(mirrored) < 48  # a random half of the batch, not none or all
    assert torch.equal(flipped, random_flip(x, torch.Generator().manual_seed(1))[0])


def test_prepare_normalises_with_training_statistics(data_root):
    cfg = validate({"model": {"name": "simplenn"}, "data": {"dataset": "fashion_mnist", "train_subset": 2000}}, "test")
    splits = prepare(cfg, data_root, torch.device("cpu"))
    x = torch.cat([b for b, _ in splits.train.batches(torch.Generator().manual_seed(0))])
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02
    assert splits.shape == (1, 28, 28) and splits.info["train"] == 1800 and splits.info["val"] == 200


def test_missing_data_names_where_it_looked(tmp_path):
    with pytest.raises(CnnlabError) as e:
        locate("cifar10", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and str(tmp_path / "cifar10-jpeg.tar.gz") in msg
    assert "--download" in msg and "CNNLAB_DATA" in msg


def write_pets(data_root: Path, folder: Path, per_split: dict[str, int]) -> Path:
    """An image folder folder/{train,test}/{cat,dog}/<i>.png of real CIFAR-10 training images,
    per_split[split] per class."""
    train, _, _ = load_images(data_cfg(dataset="cifar10"), data_root)
    for split, count in per_split.items():
        for cls in ("cat", "dog"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(count):
                idx = int((train.labels == CIFAR10_CLASSES.index(cls)).nonzero()[i])
                Image.fromarray(train.images[idx].permute(1, 2, 0).numpy()).save(folder / split / cls / f"{i}.png")
    return folder


def test_image_folder_by_path_and_corrupt_image_named(data_root, tmp_path):
    write_pets(data_root, tmp_path / "pets", {"train": 3, "test": 3})
    train, _, _ = load_images(data_cfg(dataset="cifar10"), data_root)
    cfg = data_cfg(dataset="imagefolder", path=str(tmp_path / "pets"))
    tr, te, _ = load_images(cfg, tmp_path)
    assert tr.classes == ["cat", "dog"] and tr.images.shape == (6, 3, 32, 32)
    assert torch.equal(tr.images[0], train.images[int((train.labels == 3).nonzero()[0])])  # PNG is lossless
    bad = tmp_path / "pets" / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(CnnlabError, match="broken.png"):
        load_images(data_cfg(dataset="imagefolder", path=str(tmp_path / "pets"), image_size=32), tmp_path)


def write_idx(path, array) -> None:
    """A gzipped IDX file (the MNIST format): two zero bytes, 0x08 for unsigned bytes, the rank, each size,
    the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_idx_files_read_back_and_a_truncated_one_is_named(data_root, tmp_path):
    """IDX files written here from real CIFAR-10 photographs (in grey) read back exactly;
    cut short, the file is named."""
    train, test, _ = load_images(data_cfg(dataset="cifar10"), data_root)
    pick, pick_test = torch.arange(60) * 800, torch.arange(20) * 500  # every class (the archive is in class order)
    parts = {
        "train": (train.images[pick], train.labels[pick]),
        "t10k": (test.images[pick_test], test.labels[pick_test]),
    }
    for split, (images, labels) in parts.items():
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images.float().mean(1).to(torch.uint8).numpy())
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels.to(torch.uint8).numpy())
    tr, te, _ = load_images(data_cfg(dataset="idx", path=str(tmp_path)), tmp_path)
    assert torch.equal(tr.images[:, 0], train.images[pick].float().mean(1).to(torch.uint8)) and te.images.shape == (
        20,
        1,
        32,
        32,
    )
    assert tr.labels.tolist() == train.labels[pick].tolist() and tr.classes == [str(i) for i in range(10)]
    data = gzip.decompress((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[:5000]))
    with pytest.raises(CnnlabError, match="t10k-images-idx3-ubyte.gz is truncated"):
        load_images(data_cfg(dataset="idx", path=str(tmp_path)), tmp_path)


def test_official_cifar_batches_read_safely(data_root, tmp_path):
    """The official python-batch layout, written from real images, reads back;
    a pickle that would run code is refused."""
    import pickle

    import numpy as np

    train, test, _ = load_images(data_cfg(dataset="cifar10"), data_root)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        source = test if name == "test_batch" else train
        part = slice(i * 4, i * 4 + 4)
        batch = {b"data": source.images[part].reshape(4, -1).numpy(), b"labels": source.labels[part].tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    tr, te, found = load_images(data_cfg(dataset="cifar10"), tmp_path)
    assert found == folder and tr.images.shape == (20, 3, 32, 32) and te.images.shape == (4, 3, 32, 32)
    assert torch.equal(tr.images[:4], train.images[:4]) and tr.labels.tolist() == train.labels[:20].tolist()
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [os_system_probe]})
    )
    with pytest.raises(CnnlabError, match="refusing to load"):
        from cnnlab.data.decoders import read_cifar_batches

        read_cifar_batches(folder)


def os_system_probe():  # pickled by reference: unpickling it would import and call code from this module
    return "ran"


def test_failed_download_says_why_and_what_to_put_where(tmp_path, monkeypatch):
    """As torchvision fails offline: it makes MNIST/raw, then raises its retry story with urlopen's error last."""

    class Offline:
        def __init__(self, root, train, download):
            (Path(root) / "MNIST" / "raw").mkdir(parents=True)
            raise RuntimeError(
                "Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3.amazonaws.com"
                "/mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
            )

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(CnnlabError) as e:
        download("mnist", tmp_path)
    assert str(e.value) == (
        f"downloading mnist into {tmp_path} failed (Name or service not known). To get it without "
        f"downloading: put the four MNIST IDX files in <data root>/mnist/ (the data root is {tmp_path})."
    )
    assert not (tmp_path / "MNIST").exists()  # an empty MNIST/raw would be the first place the next run finds


def test_failed_download_names_the_innermost_reason(tmp_path, monkeypatch):
    import socket
    import urllib.error

    class Offline:
        def __init__(self, root, train, download):
            try:
                raise socket.gaierror(-3, "Temporary failure in name resolution")
            except OSError as e:
                raise urllib.error.URLError(e) from e

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(CnnlabError) as e:
        download("cifar10", tmp_path)
    message = str(e.value)
    assert "failed (Temporary failure in name resolution)" in message and "--download" not in message
    assert "put cifar10-jpeg.tar.gz (or the official cifar-10-python.tar.gz) in the data root" in message


def test_download_leaves_a_dataset_that_is_already_there(data_root, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: pytest.fail("nothing should be downloaded"))
    assert download("cifar10", data_root) == data_root / "cifar10-jpeg.tar.gz"


def test_first_decode_tells_progress_what_and_how_far(data_root, tmp_path, monkeypatch):
    """A real image folder, then the same as a .tar.gz: extraction and decoding each start at 0 and end at their
    total; the second load comes from the tensor cache and says nothing."""
    import tarfile

    write_pets(data_root, tmp_path / "pets", {"train": 4, "test": 2})
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))  # a first decode and extraction of what follows
    heard = []

    def tell(done, total, what):
        heard.append((done, total, what))

    load_images(data_cfg(dataset="imagefolder", path=str(tmp_path / "pets")), tmp_path, tell)
    what = f"decoding 12 images in {tmp_path / 'pets'} (first run only)"
    assert heard[0] == (0, 12, what) and heard[-1] == (12, 12, what) and all(w == what for _, _, w in heard)
    assert [done for done, _, _ in heard] == list(range(13))
    heard.clear()
    load_images(data_cfg(dataset="imagefolder", path=str(tmp_path / "pets")), tmp_path, tell)
    assert heard == []

    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as t:
        t.add(tmp_path / "pets", arcname="pets")
    load_images(data_cfg(dataset="imagefolder", path=str(tmp_path / "pets.tar.gz")), tmp_path, tell)
    size = (tmp_path / "pets.tar.gz").stat().st_size
    extracting = [h for h in heard if h[2].startswith("extracting pets.tar.gz into ")]
    assert extracting[0][:2] == (0, size) and extracting[-1][:2] == (size, size)
    assert heard[-1][:2] == (12, 12) and heard[-1][2].startswith("decoding 12 images in ")
