"""Counting a real module: one forward pass with hooks fills one record per executed layer.

The pipeline (after torchinfo): stand-in tensors for the parameters -> a forward pass with a hook
on every module and a dispatch mode under it (so functional operations such as torch.cat,
F.interpolate or a matmul written in a parent's forward are seen too) -> one `LayerCount` per layer
call, in execution order -> rows for parameters that no executed layer owns. A layer run twice is
two rows (its parameters counted once); a skip or a branch runs once, so it is counted once.

Conventions (the footer of every table says them):
  weights          parameters other than biases (BatchNorm's scale gamma is a weight), from named_parameters
  biases           parameters named `bias` (BatchNorm's shift beta is a bias)
  buffers          floating-point buffers (BatchNorm's running mean and variance), never parameters
  macs             multiply-accumulates of weights, per input image: what torch.utils.flop_counter
                   counts (convolutions, linear layers, matmuls), halved; bias additions apart
  activation_bytes bytes of new memory a layer's output takes, per image (views, in-place ops and
                   identities take none)

The forward pass runs on the `meta` device (shapes only, no arithmetic), so counting a large
network is instant; a network that cannot run on `meta` is counted on its own device instead.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop, flop_registry, shape_wrapper

from cnnlab.errors import CnnlabError
from cnnlab.models.layer_kinds import transposed_text, window_text


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, *args, out_shape, **kwargs) -> int:
    """torch's count with the weight gradient divided by `groups`: torch (2.14) counts it as if groups were 1, so a
    depthwise convolution's backward came out C times its weight-gradient work (pytorch/pytorch PR #183405 proposes
    the same division; no issue found). Input gradient plus weight gradient is twice the forward, for any groups."""
    bias, stride, padding, dilation, transposed, output_padding, groups, output_mask = args
    common = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = conv_backward_flop(*common, [output_mask[0], False, False], out_val=out_shape)
    grad_weight = conv_backward_flop(*common, [False, output_mask[1], False], out_val=out_shape)
    return grad_input + grad_weight // groups


# torch's flop formulas, corrected where torch miscounts
FLOP_FORMULAS = {**flop_registry, torch.ops.aten.convolution_backward: shape_wrapper(_conv_backward_flops)}


def flop_counter() -> FlopCounterMode:
    """torch's flop counter with cnnlab's corrections (FLOP_FORMULAS)."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


# the numeric columns of a row, in table order; each sums to its total
COUNT_COLUMNS = ("weights", "biases", "params", "trainable_params", "buffers", "macs", "bias_adds", "activation_bytes")


@dataclass
class LayerCount:
    """One row of the table. Values are integers, or sympy expressions in the symbolic table."""

    name: str
    type: str
    output_shape: Optional[list] = None  # without the batch dimension; None: the layer did not run
    input_shape: Optional[list] = None
    weights: Any = 0
    biases: Any = 0
    params: Any = 0
    trainable_params: Any = 0
    buffers: Any = 0
    macs: Any = 0
    bias_adds: Any = 0
    activation_bytes: Any = 0
    call: int = 1  # 2, 3, ...: the same module run again (its parameters are on its first row)
    arithmetic: str = ""  # the shape arithmetic, for --explain

    @property
    def frozen_params(self):
        return self.params - self.trainable_params

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def totals(rows: list[LayerCount]) -> dict:
    """Each numeric column summed over the rows (works for numbers and for formulas)."""
    return {c: sum((getattr(r, c) for r in rows), 0) for c in COUNT_COLUMNS}


def is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata  # one id per storage, on every device including meta


def _tensors(obj) -> list[torch.Tensor]:
    return [t for t in tree_leaves(obj) if isinstance(t, torch.Tensor)]


def _new_bytes(outputs, inputs) -> int:
    """Bytes of the output tensors that do not share storage with an input (a view or an in-place op is free)."""
    seen = {_storage(t) for t in _tensors(inputs)}
    total = 0
    for t in _tensors(outputs):
        if _storage(t) not in seen:
            seen.add(_storage(t))
            total += t.numel() * t.element_size()
    return total


def _shape(obj) -> Optional[list]:
    ts = _tensors(obj)
    return list(ts[0].shape[1:]) if ts else None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _has_bias(module: nn.Module) -> bool:
    return isinstance(getattr(module, "bias", None), torch.Tensor)


def module_arithmetic(module: nn.Module, in_shapes: list[list], out_shape: Optional[list]) -> str:
    """The shape arithmetic of one layer, read from the module's own settings (any network, not only specs)."""
    x = in_shapes[0] if in_shapes else None
    if x is None or out_shape is None:
        return ""
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.ConvTranspose2d)) and len(x) == 3:
        k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        d = _pair(getattr(module, "dilation", 1))
        if isinstance(p[0], str):  # padding="same" / "valid"
            return f"padding '{p[0]}': {x[1]}x{x[2]} -> {out_shape[1]}x{out_shape[2]}"
        k = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))  # a dilated kernel spans d*(F-1) + 1
        text = transposed_text if isinstance(module, nn.ConvTranspose2d) else window_text
        return "; ".join(text(x[1 + i], k[i], s[i], p[i], "HW"[i]) for i in range(2))
    if isinstance(module, nn.Linear):
        return f"{x[-1]} -> {module.out_features}"
    if isinstance(module, nn.Flatten):
        return " * ".join(map(str, x)) + f" = {math.prod(x)} features"
    if len(in_shapes) > 1 and len(out_shape) == 3 and out_shape[0] == sum(s[0] for s in in_shapes):
        return "channels: " + " + ".join(str(s[0]) for s in in_shapes) + f" = {out_shape[0]}"
    if len(x) == 3 and len(out_shape) == 3 and x[1:] != out_shape[1:]:
        return f"H x W: {x[1]}x{x[2]} -> {out_shape[1]}x{out_shape[2]}"
    if len(x) == 3 and len(out_shape) == 1:
        return f"{x[0]}x{x[1]}x{x[2]} -> {out_shape[0]} features"
    return ""


@dataclass
class _Own:
    """What a module owns directly (its own parameters and buffers), read before the pass."""

    weights: int = 0
    biases: int = 0
    trainable: int = 0
    buffers: int = 0
    has_bias: bool = False


class _Recorder(TorchDispatchMode):
    """Module hooks keep a stack of running modules; every aten operation is charged to the innermost one."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names = {m: n for n, m in model.named_modules()}
        self.own: dict[nn.Module, _Own] = {}
        self.claimed: set[int] = set()  # parameters and buffers already on a row (shared ones count once)
        for m in self.names:
            self.own[m] = self._own(m)
        self.stack: list[tuple[nn.Module, Optional[LayerCount], Any]] = []
        self.rows: list[LayerCount] = []
        self.calls: dict[nn.Module, int] = {}
        self.ran: set[nn.Module] = set()

    def _own(self, m: nn.Module) -> _Own:
        own = _Own()
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in self.claimed:
                continue
            self.claimed.add(id(p))
            if pname == "bias":
                own.biases += p.numel()
                own.has_bias = True
            else:
                own.weights += p.numel()
            own.trainable += p.numel() if p.requires_grad else 0
        for b in m.buffers(recurse=False):
            if id(b) not in self.claimed and b.is_floating_point():
                self.claimed.add(id(b))
                own.buffers += b.numel()
        return own

    def _row(self, m, name: str, type_: str) -> LayerCount:
        """A new row for a call of module `m` (or of a functional operation), with what it owns on its first call."""
        self.calls[m] = self.calls.get(m, 0) + 1
        row = LayerCount(name, type_, call=self.calls[m])
        if row.call == 1 and m in self.own:
            own = self.own[m]
            row.weights, row.biases, row.buffers = own.weights, own.biases, own.buffers
            row.params, row.trainable_params = own.weights + own.biases, own.trainable
            self.own[m] = _Own(has_bias=own.has_bias)  # leftovers are what no row took
        self.rows.append(row)
        return row

    # ---- module hooks ---------------------------------------------------------------------------

    def pre(self, module, args):
        self.ran.add(module)
        row = self._row(module, self.names[module], type(module).__name__) if is_leaf(module) else None
        if row is not None:
            row.input_shape = _shape(args)
        self.stack.append((module, row, args))

    def post(self, module, args, output):
        _, row, _ = self.stack.pop()
        if row is not None:
            row.output_shape = _shape(output)
            row.activation_bytes = _new_bytes(output, args)
            if row.macs and _has_bias(module) and row.output_shape is not None:  # one addition per output value
                row.bias_adds = math.prod(row.output_shape)
            in_shapes = [list(t.shape[1:]) for t in _tensors(args)]
            row.arithmetic = module_arithmetic(module, in_shapes, row.output_shape)

    # ---- every aten operation -------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.stack:
            return out
        module, row, _ = self.stack[-1]
        packet = func._overloadpacket
        macs = FLOP_FORMULAS[packet](*args, **kwargs, out_val=out) // 2 if packet in FLOP_FORMULAS else 0
        if row is None:  # an operation written in a parent's forward (torch.cat, F.interpolate, matmul, ...)
            new = _new_bytes(out, (args, kwargs))
            if not macs and not new:
                return out
            parent = self.names[module] or "(model)"
            row = self._row(func, f"{parent}.{packet.__name__}", packet.__name__)
            row.output_shape, row.activation_bytes = _shape(out), new
            row.input_shape = _shape(args)
        row.macs += macs
        return out

    def leftovers(self) -> list[LayerCount]:
        """Rows for parameters and buffers no executed layer took (a module that did not run, a parent's own)."""
        rows = []
        for m, own in self.own.items():
            if own.weights or own.biases or own.buffers:
                ran = m in self.ran
                rows.append(
                    LayerCount(
                        self.names[m] or "(model)",
                        type(m).__name__ + (" (own parameters)" if ran else " (not run)"),
                        weights=own.weights,
                        biases=own.biases,
                        params=own.weights + own.biases,
                        trainable_params=own.trainable,
                        buffers=own.buffers,
                    )
                )
        return rows


@contextmanager
def hooked(modules, pre, post):
    """Forward pre- and post-hooks on every module, removed however the pass ends."""
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


def stand_ins(model: nn.Module, device) -> dict[str, torch.Tensor]:
    """Tensors to run the model with instead of its own: empty on `meta`, copies elsewhere (never touched in place)."""
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    out = {}
    for name, t in named.items():
        if str(device) == "meta":
            copy = torch.empty_like(t, device="meta")
        else:
            copy = t.detach().clone()
        out[name] = copy.requires_grad_(t.requires_grad) if t.is_floating_point() else copy
    return out


def model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def run_with_stand_ins(model: nn.Module, x: torch.Tensor) -> Any:
    tensors = stand_ins(model, x.device)
    return torch.func.functional_call(model, tensors, (x,), strict=False, tie_weights=True)


def _failure(recorder: _Recorder, error: Exception, input_shape) -> CnnlabError:
    """Name the innermost layer that was running when the forward pass failed, with its input shape."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if recorder.stack:
        module, _, args = recorder.stack[-1]
        shape = _shape(args)
        settings = module.extra_repr()
        return CnnlabError(
            f"layer '{recorder.names[module] or '(model)'}' ({type(module).__name__}"
            f"{'(' + settings + ')' if settings else ''}) cannot take an input of shape {shape}: {message}"
        )
    return CnnlabError(f"the model does not run on an input of shape {list(input_shape)}: {message}")


def count(model: nn.Module, input_shape: tuple, dtype: torch.dtype = torch.float32) -> list[LayerCount]:
    """The per-layer rows of `model` for one input of `input_shape` (C, H, W), in execution order."""
    failure = None
    for device in ("meta", model_device(model)):
        recorder = _Recorder(model)
        was_training = model.training
        try:
            model.eval()
            x = torch.zeros(1, *input_shape, device=device, dtype=dtype)
            with hooked(recorder.names, recorder.pre, recorder.post), torch.no_grad(), recorder:
                run_with_stand_ins(model, x) if device == "meta" else model(x)
            return recorder.rows + recorder.leftovers()
        except CnnlabError:
            raise
        except Exception as e:  # a misfit, or an operation `meta` cannot run: try the real device once
            failure = _failure(recorder, e, input_shape)
        finally:
            model.train(was_training)
    raise failure
