"""Counting conventions: cnnlab's own, and the figures torchinfo, fvcore and Keras print for the same network.

The tools disagree because each counts something else, not because one is wrong. Each peer figure
below is computed from cnnlab's rows by that tool's own rule (read from its source and checked
against the tool itself in the tests) and split into cnnlab's MACs plus the differences, so a student
can see which part of a number comes from where:

  torchinfo  Total mult-adds: every leaf layer with parameters counts them once per output position
             (convolutions, transposed ones included) or once (any other layer). So bias additions are
             in, batch norm adds its 2C scale and shift once per layer, and a transposed convolution is
             counted at its output positions instead of its input positions. Total params: cnnlab's params.
  fvcore     FlopCountAnalysis(model.eval(), x).total(): one per multiply-accumulate of convolutions,
             linear layers and matmuls, biases ignored; batch norm 2 per element (1 without scale and
             shift; 5 and 4 on a model left in training mode); nearest upsampling 1 and bilinear 4 per
             output value; adaptive average pooling 1 per input value; everything else 0.
  keras      model.summary(): BatchNormalization holds 4C weights: scale and shift (trainable) and the
             moving mean and variance (non-trainable), so Total params = cnnlab's params + batch-norm
             buffers; Keras prints no multiply-accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from torch import nn

from cnnlab.analysis.count import LayerCount
from cnnlab.errors import CnnlabError, did_you_mean

CNNLAB = [
    "params: each layer's named_parameters (BatchNorm: 2C, its scale and shift); weights = params other than biases; "
    "trainable + frozen = params",
    "buffers: floating-point buffers, never parameters (BatchNorm: 2C running mean and variance; "
    "its integer batch counter is left out)",
    "MACs (connections): multiply-accumulates of weights per image, as torch.utils.flop_counter counts them "
    "(convolutions, linear layers, matmuls); bias additions apart (bias adds); BatchNorm, activations, pooling, "
    "upsampling, concatenation and addition: 0; FLOPs = 2 x MACs",
    "activation bytes: new memory of each layer's output for one image (float32: 4 bytes a value); views (flatten), "
    "in-place operations and identities: 0",
    "one forward pass with hooks: a layer run twice has two rows (its parameters on the first); "
    "skips and branches count once",
]

FVCORE_UPSAMPLE = {"nearest": 1, "bilinear": 4}  # fvcore's count per output value of aten::upsample_{mode}2d


@dataclass
class PeerCount:
    """What one tool prints for the network, and how it follows from cnnlab's counts."""

    tool: str
    call: str  # the call that prints it
    figures: list[tuple[str, int]]  # (what the tool prints, the exact number)
    parts: list[tuple[str, int]] = field(
        default_factory=list
    )  # cnnlab's MACs and the differences; they sum to the first figure
    words: str = ""
    shown: str = ""  # the figure as the tool displays it, where it rounds

    def as_dict(self) -> dict:
        return {
            "tool": self.tool,
            "call": self.call,
            "figures": dict(self.figures),
            "parts": dict(self.parts),
            "convention": self.words,
            **({"shown": self.shown} if self.shown else {}),
        }


def _is_batch_norm(module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _layers(model: nn.Module, rows: list[LayerCount]):
    """(row, its module or None for an operation outside any layer, the module's own weights and biases)
    per executed row."""
    modules = dict(model.named_modules())
    own: dict[str, tuple] = {}
    for r in rows:
        if r.output_shape is None:  # parameters of a layer that did not run, or a parent's own
            continue
        module = modules.get(r.name)
        if type(module).__name__ != r.type:  # a row named after an operation (e.g. '(model).cat'), not a layer
            module = None
        if r.call == 1:
            own[r.name] = (r.weights, r.biases)
        yield r, module, own.get(r.name, (0, 0))


def _add(parts: dict, label: str, value: int) -> None:
    if value:
        parts[label] = parts.get(label, 0) + value


def torchinfo(model: nn.Module, rows: list[LayerCount], total: dict, shape: str) -> PeerCount:
    """torchinfo.summary(model, input_size=(1, C, H, W)): Total params and Total mult-adds."""
    parts = {"cnnlab MACs": total["macs"]}
    figure = 0
    for r, module, (weights, biases) in _layers(model, rows):
        if module is None:  # torchinfo sees layers only, not torch.cat / F.interpolate / a matmul in a forward
            _add(parts, "MACs outside any layer (torchinfo sees layers only)", -r.macs)
            continue
        positions = prod(r.output_shape[1:]) if "Conv" in r.type else 1
        counted = (weights + biases) * positions
        figure += counted
        rest = counted - r.macs - r.bias_adds  # what torchinfo adds to cnnlab's MACs and bias additions
        _add(parts, "bias additions", r.bias_adds)
        if _is_batch_norm(module):
            _add(parts, "batch norm (2C, scale and shift, once per layer)", rest)
        elif isinstance(module, nn.ConvTranspose2d):
            _add(parts, "transposed convolutions (weights x output positions; cnnlab: x input positions)", rest)
        else:
            _add(parts, f"{r.type} (its parameters once)", rest)
    words = (
        "torchinfo counts, for every layer with parameters, its parameters once per output position "
        "(convolutions) or once (other layers): its mult-adds are cnnlab's MACs + bias additions + 2C per "
        "batch-norm layer (+ a transposed convolution at its output positions); its params equal cnnlab's"
    )
    shown = f"Total mult-adds ({'G' if figure >= 1e9 else 'M'}): {figure / (1e9 if figure >= 1e9 else 1e6):,.2f}"
    return PeerCount(
        "torchinfo",
        f"torchinfo.summary(model, input_size=(1, {shape}))",
        [
            ("Total mult-adds", figure),
            ("Total params", total["params"]),
            ("Trainable params", total["trainable_params"]),
        ],
        list(parts.items()),
        words,
        shown,
    )


def _fvcore_extra(r: LayerCount, module, training: bool) -> tuple[str, int]:
    """(what, count) fvcore adds for one row beyond its multiply-accumulates."""
    if _is_batch_norm(module):
        per = (5 if module.affine else 4) if training else (2 if module.affine else 1)
        return f"batch norm ({per} per element)", per * prod(r.output_shape)
    mode = None
    if isinstance(module, nn.Upsample):
        mode = module.mode
    elif module is None and r.type.startswith("upsample_"):  # F.interpolate in a forward: upsample_nearest2d, ...
        mode = r.type.removeprefix("upsample_").removesuffix("2d")
    if mode in FVCORE_UPSAMPLE:
        return f"{mode} upsampling ({FVCORE_UPSAMPLE[mode]} per output value)", FVCORE_UPSAMPLE[mode] * prod(
            r.output_shape
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "adaptive average pooling (1 per input value)", prod(r.input_shape)
    return "", 0


def fvcore(model: nn.Module, rows: list[LayerCount], total: dict, shape: str) -> PeerCount:
    """fvcore.nn.FlopCountAnalysis(model, x).total(), the model in eval mode
    (and, as a second figure, in training mode)."""
    figures = {}
    for training in (False, True):
        parts = {"cnnlab MACs (biases ignored)": total["macs"]}
        for r, module, _ in _layers(model, rows):
            what, extra = _fvcore_extra(r, module, training)
            _add(parts, what, extra)
        figures[training] = (sum(parts.values()), parts)
    words = (
        "fvcore counts one per multiply-accumulate of convolutions, linear layers and matmuls and ignores biases "
        "(cnnlab's MACs), and adds 2 per batch-norm element (model.eval(); 5 in training mode), 1 per nearest- "
        "and 4 per bilinear-upsampled output value and 1 per adaptive-average-pool input value; activations, "
        "pooling, concatenation and addition: 0"
    )
    return PeerCount(
        "fvcore",
        f"fvcore.nn.FlopCountAnalysis(model.eval(), torch.zeros(1, {shape})).total()",
        [("total (eval mode)", figures[False][0]), ("total (model left in training mode)", figures[True][0])],
        list(figures[False][1].items()),
        words,
    )


def keras(model: nn.Module, rows: list[LayerCount], total: dict, shape: str) -> PeerCount:
    """model.summary() of the same network in Keras: batch norm's moving statistics are non-trainable weights."""
    moving = sum(r.buffers for r, module, _ in _layers(model, rows) if _is_batch_norm(module))
    frozen = total["params"] - total["trainable_params"]
    words = (
        "Keras counts a BatchNormalization layer as 4C weights: gamma and beta (trainable, cnnlab's 2C params) and "
        "the moving mean and variance (non-trainable; cnnlab's 2C buffers); other layers as cnnlab does; "
        "it prints no multiply-accumulates"
    )
    return PeerCount(
        "keras",
        "model.summary()",
        [
            ("Total params", total["params"] + moving),
            ("Trainable params", total["trainable_params"]),
            ("Non-trainable params", frozen + moving),
        ],
        [
            ("cnnlab params", total["params"]),
            ("batch-norm moving mean and variance (2C per layer, non-trainable)", moving),
        ],
        words,
    )


PEERS = {"torchinfo": torchinfo, "fvcore": fvcore, "keras": keras}


def check_peers(tools: list[str]) -> list[str]:
    unknown = [t for t in tools if t not in PEERS]
    if unknown:
        raise CnnlabError(f"--as {', '.join(unknown)}{did_you_mean(unknown[0], PEERS)}: choose {', '.join(PEERS)}")
    return list(tools)


def peer_count(tool: str, model: nn.Module, rows: list[LayerCount], total: dict, in_shape: tuple) -> PeerCount:
    """What `tool` prints for `model` counted as `rows` (with `total`) at one input of `in_shape` (C, H, W)."""
    return PEERS[tool](model, rows, total, ", ".join(map(str, in_shape)))
