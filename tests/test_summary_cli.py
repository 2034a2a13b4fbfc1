"""`cnnlab summary` and `cnnlab zoo` as a new user meets them (issue 14, items 3-10).

Expected numbers are worked out by hand in each test, or read from the peer tools themselves
(torchinfo, fvcore), never from the code under test.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import sympy as sp
import torch
import torchvision
from typer.testing import CliRunner

from cnnlab.document import Table, latex_formula, to_text
from cnnlab.analysis.network_summary import Options, summarise
from cnnlab.cli import app
from cnnlab.errors import CnnlabError
from cnnlab.models.recipe import from_zoo
from cnnlab.analysis.subject import Subject, resolve


def summary(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["summary", *args, "--no-measure"], env=env)


def summary_json(*args: str) -> dict:
    out = summary(*args, "--format", "json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


# ---- item 3: a self-check that fails is an error ------------------------------------------------


def test_a_failed_self_check_is_an_error_and_prints_no_table(monkeypatch):
    import cnnlab.analysis.network_summary as summary_module

    real_count = summary_module.count

    def one_weight_too_many(model, shape):
        rows = real_count(model, shape)
        rows[0].weights += 1
        return rows

    monkeypatch.setattr(summary_module, "count", one_weight_too_many)
    out = summary("conv NF k3 p1", "--symbolic", "--input", "1xHxW", "--set", "NF=4", "--set", "H=8", "--set", "W=8")
    assert out.exit_code != 0
    assert "self-check failed at conv1 weights: the formula gives 36, the built module 37" in str(out.exception)
    assert "total" not in out.output


def test_transposed_upsample_formulas_agree_with_the_module():
    # ConvTranspose2d(8, 8, 2, stride 2): 8*8*2*2 = 256 weights + 8 biases; every input value meets 8*2*2*8 weights
    data = summary_json(
        "upsample 2 mode=transposed", "--symbolic", "--input", "8xHxW", "--set", "H=16", "--set", "W=16"
    )
    assert data["total"]["params"] == 264
    assert data["total"]["macs"] == 256 * 16 * 16 == 65_536


# ---- item 4: counting needs no data when the input and the class count are known ----------------


def test_experiments_are_counted_without_their_data(tmp_path):
    empty = str(tmp_path / "no-data")
    seg = summary_json("seg-unet-transposed", "--input", "3x128x128", "--data-dir", empty)
    assert seg["input"] == [3, 128, 128]
    assert seg["layers"][-1]["output_shape"] == [2, 128, 128]  # Penn-Fudan: background and person
    assert summary_json("seg-unet-transposed", "--data-dir", empty)["input"] == [3, 128, 128]  # data.image_size 128
    colour = summary_json("colour-cnn", "--data-dir", empty)
    assert colour["input"] == [1, 32, 32]  # colourize: greyscale in
    assert colour["layers"][-1]["output_shape"] == [24, 32, 32]  # data.palette_size colours out
    assert not (tmp_path / "no-data").exists()


def test_an_experiment_whose_data_fixes_nothing_needs_input_and_classes(tmp_path):
    experiment = tmp_path / "folder.yaml"
    experiment.write_text("data: {dataset: imagefolder, path: flowers}\nmodel: {name: fast_a}\n")
    empty = str(tmp_path / "no-data")
    out = summary(str(experiment), "--data-dir", empty)
    assert out.exit_code != 0 and "--input CxHxW classes=K" in str(out.exception)
    data = summary_json(str(experiment), "--input", "3x64x64", "classes=5", "--data-dir", empty)
    assert data["layers"][-1]["output_shape"] == [5]
    assert data["layers"][-1]["params"] == 256 * 5 + 5


# ---- item 5: an inline spec of one layer ----------------------------------------------------------


def test_a_one_layer_inline_spec_is_counted():
    data = summary_json("conv 100 k3", "--input", "3x100x100")
    assert data["total"]["params"] == 100 * 3 * 3 * 3 + 100 == 2_800
    assert data["layers"][0]["output_shape"] == [100, 98, 98]


@pytest.mark.parametrize(
    "model, words",
    [
        ("resnet 18", ["'resnet 18' is read as an inline spec", "unknown layer kind 'resnet'"]),
        (
            "resnet19",
            ["'resnet19' is not a zoo model", "an inline spec is layers with their numbers, e.g. 'conv 100 k3'"],
        ),
    ],
)
def test_what_matches_nothing_is_named(model, words):
    with pytest.raises(CnnlabError) as e:
        resolve(model)
    for w in words:
        assert w in str(e.value)


# ---- item 6: the terminal table fits the terminal -------------------------------------------------


def test_the_table_fits_a_100_column_terminal_and_says_what_it_left_out():
    out = summary("simplenn", env={"COLUMNS": "100"})
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.output.splitlines()) <= 100
    assert "left out to fit 100 columns: biases" in out.output
    resnet = summary("resnet18", env={"COLUMNS": "100"})
    assert max(len(line) for line in resnet.output.splitlines()) <= 100
    assert "│ layer2.0.downsample.0 " in resnet.output and "…" not in resnet.output  # names whole


def test_chosen_columns_are_kept_folded_rather_than_left_out():
    out = summary(
        "resnet18", "--columns", "name,type,output_shape,weights,biases,params,buffers,macs", env={"COLUMNS": "60"}
    )
    assert out.exit_code == 0, out.output
    assert "left out" not in out.output.split("by layer type")[0] and "…" not in out.output
    assert "11,689,512" in out.output  # the total, whole


# ---- item 7: text that looks like markup is printed as it is --------------------------------------


def test_zoo_prints_bracketed_descriptions():
    out = CliRunner().invoke(app, ["zoo"], env={"COLUMNS": "300"})
    assert "Colourization CNN: [conv-NF, maxpool, BN, ReLU], [conv-2NF, maxpool, BN, ReLU]" in out.output


def test_table_cells_and_titles_are_not_markup():
    text = to_text([Table("[bold]title[/bold]", ["[i]a name as wide as the title[/i]"], [["[red]x[/red]"]])], width=80)
    assert "[bold]title[/bold]" in text and "[i]a name as wide as the title[/i]" in text and "[red]x[/red]" in text


# ---- item 8: --scale says why parameters stay and which grow --------------------------------------


def test_scale_names_the_dense_layer_that_grows():
    data = summary_json("table1", "--scale", "2")
    assert data["total"]["params"] == 390_410 and data["whatif"]["variant"]["total"]["params"] == 783_626
    why = "\n".join(data["whatif"]["why"])
    # dense1 after flatten: 128 x 4 x 4 = 2,048 inputs at 32x32, 128 x 8 x 8 = 8,192 at 64x64; 64 outputs
    assert (
        "dense1: 131,136 -> 524,352 params (weights 131,072 -> 524,288), because flatten1 gives it 4x the "
        "features: 128 x 4 x 4 = 2,048 -> 128 x 8 x 8 = 8,192"
    ) in why
    assert "neither holds H or W" in why


def test_scale_shows_batch_norm_parameters_do_not_grow():
    out = summary("simplenn", "--scale", "2", env={"COLUMNS": "200"})
    assert "why only some parameters grow" in out.output
    assert "batch-norm parameters per layer, before -> after: bn1 16 -> 16, bn2 32 -> 32" in out.output  # 2C: 2*8, 2*16
    same = summary_json("fast_a", "--scale", "2")  # global average pooling: nothing grows
    assert same["total"]["params"] == same["whatif"]["variant"]["total"]["params"]
    assert "no layer's parameters changed" in "\n".join(same["whatif"]["why"])


# ---- item 9: LaTeX names of several letters -------------------------------------------------------


def test_latex_writes_names_of_several_letters_upright():
    nf, k = sp.Symbol("NF"), sp.Symbol("k")
    assert latex_formula(nf * k**2) == r"\mathrm{NF} k^{2}"
    assert latex_formula(sp.Symbol("in_channels") + 1) == r"\mathrm{in\_channels} + 1"
    out = summary("colour_cnn", "--symbolic", "--format", "latex")
    assert r"$\mathrm{NF} k^{2}$" in out.output and "$NF k^{2}$" not in out.output


# ---- item 10: the figures of torchinfo, fvcore and Keras ------------------------------------------


def peers_of(subject: Subject, shape: tuple) -> dict:
    result = summarise(subject, shape, Options(measure=False, peers=["torchinfo", "fvcore", "keras"]))
    peers = {p.tool: p for p in result.base.peers}
    for p in peers.values():
        assert sum(v for _, v in p.parts) == p.figures[0][1]  # the parts add up to the figure
    return {tool: dict(p.figures) for tool, p in peers.items()}


def fvcore_total(model: torch.nn.Module, shape: tuple, training: bool) -> int:
    from fvcore.nn import FlopCountAnalysis

    model.train(training)
    analysis = FlopCountAnalysis(model, torch.zeros(2 if training else 1, *shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total() // (2 if training else 1)  # batch 2 in training mode (batch norm needs two values)


ZOO_CASES = [
    ("simplenn", (3, 32, 32), None),
    ("table1", (3, 32, 32), None),
    ("colour_cnn", (1, 32, 32), None),
    ("seg_unet", (3, 32, 32), "nearest"),
    ("seg_unet", (3, 32, 32), "bilinear"),
    ("seg_unet", (3, 32, 32), "transposed"),
]


@pytest.mark.parametrize("name, shape, upsample", ZOO_CASES)
def test_as_torchinfo_and_fvcore_equal_the_tools_on_the_zoo(name, shape, upsample):
    import torchinfo

    recipe = from_zoo(name)
    options = replace(recipe.options, upsample=upsample) if upsample else recipe.options
    subject = Subject(name, shape, factory=lambda _shape: recipe.build(shape, options))
    ours = peers_of(subject, shape)
    model = recipe.build(shape, options).eval()
    stats = torchinfo.summary(model, input_size=(1, *shape), verbose=0)
    assert ours["torchinfo"]["Total mult-adds"] == stats.total_mult_adds
    assert ours["torchinfo"]["Total params"] == stats.total_params
    assert ours["fvcore"]["total (eval mode)"] == fvcore_total(model, shape, training=False)
    assert ours["fvcore"]["total (model left in training mode)"] == fvcore_total(model, shape, training=True)


def test_as_torchinfo_and_fvcore_equal_the_tools_on_resnet18():
    import torchinfo

    shape = (3, 64, 64)
    ours = peers_of(resolve("resnet18"), shape)
    model = torchvision.models.resnet18(weights=None).eval()
    stats = torchinfo.summary(model, input_size=(1, *shape), verbose=0)
    assert (ours["torchinfo"]["Total mult-adds"], ours["torchinfo"]["Total params"]) == (
        stats.total_mult_adds,
        stats.total_params,
    )
    assert ours["fvcore"]["total (eval mode)"] == fvcore_total(model, shape, training=False)


def test_as_keras_counts_batch_norm_as_4c_by_hand():
    """Keras is not installed here (TensorFlow is too large): its convention, checked by hand on simplenn.

    BatchNormalization(C) holds gamma, beta (trainable) and moving mean, variance (non-trainable): 4C.
    """
    convs = (5 * 5 * 3 * 8 + 8) + (3 * 3 * 8 * 16 + 16)
    dense = (16 * 6 * 6 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    norms_trainable, norms_moving = 2 * 8 + 2 * 16, 2 * 8 + 2 * 16
    keras = peers_of(resolve("simplenn"), (3, 32, 32))["keras"]
    assert keras == {
        "Total params": convs + dense + norms_trainable + norms_moving,
        "Trainable params": convs + dense + norms_trainable,
        "Non-trainable params": norms_moving,
    }


def test_as_prints_the_figure_and_the_convention_in_words():
    out = summary("simplenn", "--as", "torchinfo", env={"COLUMNS": "200"})
    assert "as torchinfo counts it" in out.output
    # 716,328 MACs + 8,790 bias additions (8x28x28 + 16x12x12 + 120 + 84 + 10) + 2C per batch norm (16 + 32)
    assert "Total mult-adds 725,166 = 716,328 cnnlab MACs + 8,790 bias additions + 48 batch norm" in out.output
    assert "printed as 'Total mult-adds (M): 0.73'" in out.output
    refused = summary("simplenn", "--as", "thop")
    assert refused.exit_code != 0 and "choose torchinfo, fvcore, keras" in str(refused.exception)
    with pytest.raises(CnnlabError, match="--as counts numbers, not formulas"):
        summarise(resolve("colour_cnn"), (1, "H", "W"), Options(symbolic=True, peers=["torchinfo"]))
