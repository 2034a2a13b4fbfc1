"""Look inside from the command line and in every run: `cnnlab layers`, `cnnlab explain`, the best checkpoint's
confusion and sparsity in summary.json, ResNet-18, and the machine peak that throughput is read against."""

import json
import re

import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.data import prepare
from cnnlab.data.loader import DeviceBatches
from cnnlab.engine import peak
from cnnlab.engine.restore import restore
from cnnlab.errors import CnnlabError
from cnnlab.explain import explain_run
from cnnlab.explain.example import file_example, split_example
from cnnlab.explain.gradcam import grad_cam
from cnnlab.runner import start_run
from tests.conftest import quick_config


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory):
    """SimpleNN trained one epoch on a Fashion-MNIST slice (200 test images)."""
    return start_run(quick_config(), tmp_path_factory.mktemp("runs"), data_root)


def invoke(*args):
    out = CliRunner().invoke(app, [str(a) for a in args])
    if out.exception is not None and not isinstance(out.exception, SystemExit):
        raise out.exception
    assert out.exit_code == 0, out.output
    return out.output


def test_cnnlab_layers_on_zoo_spec_torchvision_and_run(run):
    zoo = invoke("layers", "simplenn")
    assert re.search(r"conv1\s+│ Conv2d\s+│ 8 x 28 x 28\s+│ conv", zoo) and "dense3" in zoo
    assert "first convolution (--layer first): conv1" in zoo and "last convolution (--layer last): conv2" in zoo
    spec = json.loads(
        invoke(
            "layers",
            "conv 8 k3 -> act -> maxpool 2 -> conv 4 k3 -> flatten -> dense 10",
            "--input",
            "3x16x16",
            "--format",
            "json",
        )
    )
    assert (spec["first"], spec["last"]) == ("conv1", "conv2")
    assert [(r["name"], r["output_shapes"]) for r in spec["layers"] if r["is_conv"]] == [
        ("conv1", [[8, 14, 14]]),
        ("conv2", [[4, 5, 5]]),
    ]
    resnet = json.loads(invoke("layers", "resnet18", "--input", "3x256x256", "-f", "json"))
    shapes = {r["name"]: r["output_shapes"] for r in resnet["layers"]}
    assert (resnet["first"], resnet["last"], resnet["last_conv"]) == ("conv1", "layer4", "layer4.1.conv2")
    assert shapes["conv1"] == [[64, 128, 128]] and shapes["layer4"] == [[512, 8, 8]]
    table = invoke("layers", "resnet18", "--input", "3x64x64")
    assert "call 1: 64 x 16 x 16; call 2: 64 x 16 x 16" in table  # layer1.0.relu runs twice
    assert "last convolution (--layer last): layer4 (the module that holds layer4.1.conv2" in table
    folder = json.loads(invoke("layers", run.path, "-f", "json"))  # the run's own model, input from its data
    assert folder["input_shape"] == [1, 28, 28] and folder["layers"][0]["output_shapes"] == [[8, 24, 24]]


def test_every_classification_run_records_its_best_checkpoint(run):
    summary = run.summary().to_dict()
    matrix = summary["test_confusion_at_best"]
    counts = torch.tensor(matrix["counts"])
    assert counts.shape == (10, 10) and int(counts.sum()) == matrix["total"] == 200
    assert int(counts.trace()) / matrix["total"] == summary["test_acc_at_best"]  # the same checkpoint, exactly
    per_class = summary["test_class_acc_at_best"]
    assert [per_class[c] for c in summary["classes"]] == (counts.diag().double() / counts.sum(1)).tolist()
    files = [f["file"] for f in summary["figures"]]
    assert files == [
        "figures/filters.png",
        "figures/activations-conv1.png",
        "figures/activations-conv2.png",
        "figures/gradcam.png",
        "figures/confusion.png",
        "figures/most-confused.png",
    ]
    assert all((run.path / f).is_file() for f in files)
    assert summary["look_inside"]["image"]["source"] == "test example 0"
    sparsity = summary["sparsity"]
    assert sparsity["threshold"] == 1e-3 and [r["name"] for r in sparsity["layers"]] == [
        "conv1",
        "conv2",
        "dense1",
        "dense2",
        "dense3",
    ]
    assert sparsity["total"]["weights"] == sum(r["weights"] for r in sparsity["layers"])
    assert len(summary["most_confused_at_best"]) == 16


def test_explain_command_writes_a_self_contained_page(run, data_root):
    page = invoke(
        "explain", run.path, "--index", 7, "--layer", "relu1", "--layer", "last", "--data-dir", data_root
    ).strip()
    assert page == str(run.path / "explain.html")
    record = json.loads((run.path / "explain.json").read_text())
    assert (record["checkpoint"], record["epoch"]) == ("best", 1)
    assert record["layers"]["shown"] == ["relu1", "conv2"]
    files = [f["file"] for f in record["figures"]]
    assert files == [
        "explain/filters.png",
        "explain/activations-relu1.png",
        "explain/activations-conv2.png",
        "explain/gradcam.png",
        "explain/confusion.png",
        "explain/most-confused.png",
    ]
    assert all((run.path / f).is_file() for f in files)
    html = (run.path / "explain.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html) and html.count('src="data:image/png;base64,') == len(files)
    confusion = record["confusion"]
    assert confusion["accuracy"] == record["recorded_test_acc"] == run.summary().to_dict()["test_acc_at_best"]
    built = restore(run, data_root)
    assert (
        record["image"]["index"] == 7 and record["image"]["true"] == built.data.classes[int(built.data.test.labels[7])]
    )
    with pytest.raises(CnnlabError, match="closest names: conv2, conv1; see `cnnlab layers`"):
        invoke("explain", run.path, "--layer", "conv", "--data-dir", data_root)
    with pytest.raises(CnnlabError, match="layer 'dense1' gives 120 values, not channel maps"):
        invoke("explain", run.path, "--layer", "dense1", "--data-dir", data_root)
    with pytest.raises(CnnlabError, match="either --image FILE or --split/--index"):
        invoke("explain", run.path, "--image", "x.png", "--index", "3")
    with pytest.raises(CnnlabError, match="outside the val split"):
        invoke("explain", run.path, "--split", "val", "--index", "1000", "--data-dir", data_root)


def test_an_image_file_is_prepared_as_the_run_prepared_its_data(run, data_root, tmp_path):
    built = restore(run, data_root)
    test = built.data.test
    Image.fromarray(test.images[7, 0].numpy()).save(tmp_path / "seven.png")  # the example itself, as a file
    from_file, from_split = file_example(tmp_path / "seven.png", test), split_example(test, 7)
    assert torch.equal(from_file.x, from_split.x) and from_file.label is None
    big = Image.fromarray(test.images[7, 0].numpy()).convert("RGB").resize((56, 40))
    big.save(tmp_path / "big.jpg")
    resized = file_example(tmp_path / "big.jpg", test)
    assert resized.x.shape == (1, 1, 28, 28) and "resized to 28x28" in resized.source
    invoke("explain", run.path, "--image", tmp_path / "seven.png", "--data-dir", data_root)
    record = json.loads((run.path / "explain.json").read_text())
    probs = grad_cam(built.model, from_split.x, "conv2").probs[0]
    assert record["image"]["predicted"] == built.data.classes[int(probs.argmax())]
    assert record["image"]["probability"] == pytest.approx(float(probs.max()))
    assert record["image"]["true"] is None and record["figures"][3]["panels"][0].startswith("predicted: ")
    with pytest.raises(CnnlabError, match="no such file"):
        file_example(tmp_path / "missing.png", test)


@pytest.mark.slow
def test_explain_on_torchvision_resnet18_with_real_images(data_root, tmp_path):
    cfg = quick_config(data={"dataset": "cifar10", "train_subset": 100, "test_subset": 40})
    test = prepare(cfg, data_root, torch.device("cpu")).test
    test = DeviceBatches(
        test.images, test.labels, 20, torch.device("cpu"), test.scale.flatten(), test.shift.flatten(), input_size=96
    )  # CIFAR resized to 96x96 on the device, as data.input_size does
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    record = explain_run(model, test, [str(i) for i in range(10)], tmp_path, confused=4)
    assert record["layers"]["first"] == "conv1" and record["layers"]["last"] == "layer4" == record["layers"]["cam"]
    filters, conv1, layer4 = record["figures"][:3]
    assert filters["tiles"] == 64 and "64 filters of 7x7" in filters["title"]
    assert conv1["shape"] == [64, 48, 48] and layer4["shape"] == [512, 3, 3] and len(layer4["channels"]) == 16
    assert record["confusion"]["total"] == 40
    assert record["sparsity"]["layers"][0]["weights"] == 64 * 3 * 7 * 7


def test_peak_is_measured_once_per_machine_and_precision(tmp_path, monkeypatch):
    measured = []

    def fake(dtype, n, device):
        measured.append(dtype)
        return 123.456

    monkeypatch.setattr(peak, "matmul_peak_gflops", fake)
    monkeypatch.setattr(peak, "machine_load", lambda: 0.0)  # a calm machine, whatever this one is doing
    cpu = torch.device("cpu")
    first = peak.machine_peak(cpu, "fp32", tmp_path)
    assert first["gflops"] == 123.46 and first["precision"] == "fp32" and measured == [torch.float32]
    assert peak.machine_peak(cpu, "fp32", tmp_path) == first and len(measured) == 1  # read back, not measured
    peak.machine_peak(cpu, "bf16", tmp_path)
    assert measured == [torch.float32, torch.bfloat16]
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert peak.machine_peak(cpu, "fp32", tmp_path)["key"] != first["key"] and len(measured) == 3
    finally:
        torch.set_num_threads(threads)
    assert len(json.loads((tmp_path / peak.PEAKS_FILE).read_text())) == 3
    assert peak.cpu_model() in first["key"] and torch.__version__ in first["key"]


def test_a_peak_measured_on_a_busy_machine_is_measured_again_once_it_is_calm(tmp_path, monkeypatch):
    readings, load = iter([40.0, 190.0, 150.0]), [100.0]
    monkeypatch.setattr(peak, "matmul_peak_gflops", lambda dtype, n, device: next(readings))
    monkeypatch.setattr(peak, "machine_load", lambda: load[0])
    cpu = torch.device("cpu")
    busy = peak.machine_peak(cpu, "fp32", tmp_path)
    assert (busy["gflops"], busy["busy"]) == (40.0, True)
    assert peak.machine_peak(cpu, "fp32", tmp_path)["gflops"] == 40.0  # still busy: read back, not measured again
    load[0] = 0.5
    calm = peak.machine_peak(cpu, "fp32", tmp_path)
    assert (calm["gflops"], calm["busy"]) == (190.0, False)
    assert peak.machine_peak(cpu, "fp32", tmp_path) == calm  # calm entries stay: the third reading is never taken
    assert next(readings) == 150.0
    from cnnlab.document import render
    from cnnlab.records import RunSummary
    from cnnlab.report.run_blocks import peak_note

    def note(p):
        return render(peak_note(RunSummary(name="x", status="completed", peak=p)), "markdown")

    assert "busy when it was measured" in note(busy) and "busy" not in note(calm)


def test_the_run_records_its_peak_and_the_share_per_epoch(run):
    recorded = run.summary().to_dict()["peak"]
    assert recorded["gflops"] > 0 and recorded["precision"] == "fp32" and recorded["device"] == "cpu"
    for row in run.metrics():
        assert row["peak_percent"] == pytest.approx(
            100 * row["train_gflop_per_s"] / recorded["gflops"], rel=0.05, abs=0.02
        )  # GFLOP/s is rounded to 0.01
    html = (run.path / "report.html").read_text()
    assert "share of peak (%)" in html and f"{recorded['gflops']:,.1f} GFLOP/s" in html


def test_a_1x1_activation_panel_says_so_and_names_a_layer_that_shows_where(data_root, tmp_path):
    """ResNet-18 at 32x32: layer4 gives 512x1x1, layer3 256x2x2; the panel of layer4 and its Grad-CAM say so."""
    cfg = quick_config(data={"dataset": "cifar10", "train_subset": 100, "test_subset": 20})
    test = prepare(cfg, data_root, torch.device("cpu")).test
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    record = explain_run(model, test, [str(i) for i in range(10)], tmp_path, confused=2)
    assert record["layers"]["last"] == "layer4" and record["layers"]["last_spatial"] == "layer3"
    conv1, layer4, cam = record["figures"][1:4]
    assert layer4["shape"] == [512, 1, 1] and "the last layer with a larger map is layer3 (2x2)" in layer4["caption"]
    assert "1x1 map" not in conv1["caption"] and "layer3 (2x2)" in cam["caption"]
