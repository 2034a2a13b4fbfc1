"""The layer-spec language: a network written like the table in a report.

    conv 32 k5 p2 -> bn -> act -> maxpool 2 -> flatten -> dense 64 -> act -> dense classes

Layers are separated by `->` (or new lines). Each layer is a kind, positional values, and options
written `k5` / `s2` / `p2` (kernel, stride, padding) or `name=value`. A value may be a number or an
expression in named hyper-parameters (`2*NF`, `k//2`, `classes`), kept as text until built, so the
same spec can be counted symbolically (analysis) or instantiated (builder).

Skip connections: `save NAME` remembers the current tensor; `cat NAME` concatenates it along
channels (U-Net), `add NAME` adds it (residual). `dwconv k3 p1` is a depthwise convolution (one
filter per input channel, as many outputs as inputs), the first half of a separable convolution.
Every kind, its options and their defaults: `cnnlab.models.layer_kinds`.
"""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Union

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.models.layer_kinds import REQUIRED, kind_of

Value = Union[int, float, str]

SHORTHAND = re.compile(r"^([ksp])(\d+)$")


@dataclass(frozen=True)
class Layer:
    """One parsed layer: its kind, its options (numbers or expression text) and where it came from."""

    kind: str
    options: dict[str, Value] = field(default_factory=dict)
    text: str = ""
    index: int = 0  # 1-based position in the spec, for messages

    def where(self) -> str:
        return f"layer {self.index} '{self.text}'"


def split_layers(spec: str | list[str]) -> list[str]:
    if isinstance(spec, str):
        parts = re.split(r"->|\n", spec)
    else:
        parts = list(spec)
    return [p.strip() for p in parts if p.strip() and not p.strip().startswith("#")]


def _value(word: str, option: str, words: frozenset[str]) -> Value:
    if option in words:
        return word
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        return word  # an expression in named hyper-parameters, checked when evaluated


def parse_layer(text: str, index: int) -> Layer:
    words = text.split()
    kind = words[0]
    record = kind_of(kind, f"layer {index} '{text}'")
    positional, defaults = record.positional, record.options
    options: dict[str, Value] = {}
    pending = list(positional)
    for word in words[1:]:
        if "=" in word:
            key, val = word.split("=", 1)
        elif (m := SHORTHAND.match(word)) and m.group(1) in defaults:
            key, val = m.group(1), m.group(2)
        elif pending:
            key, val = pending[0], word
        else:
            raise CnnlabError(f"layer {index} '{text}': cannot read '{word}'; options of {kind}: {', '.join(defaults) or 'none'}")
        if key not in defaults:
            raise CnnlabError(f"layer {index} '{text}': unknown option '{key}'{did_you_mean(key, defaults)}; "
                              f"options of {kind}: {', '.join(defaults) or 'none'}")
        if key in pending:
            pending.remove(key)
        options[key] = _value(val, key, record.words)
    for key, default in defaults.items():
        if key not in options:
            if default is REQUIRED:
                raise CnnlabError(f"layer {index} '{text}': missing '{key}' (e.g. '{kind} {'32' if key == 'out' else 'x'}')")
            options[key] = default
    return Layer(kind, options, text, index)


def parse_spec(spec: str | list[str]) -> list[Layer]:
    texts = split_layers(spec)
    if not texts:
        raise CnnlabError("the model spec is empty; write layers like 'conv 32 k3 p1 -> act -> flatten -> dense classes'")
    return [parse_layer(t, i + 1) for i, t in enumerate(texts)]


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


def evaluate(expr: Value, values: dict[str, int], where: str = "") -> Any:
    """Evaluate a number or an expression like `2*NF` or `k//2` with the given named values.

    Only names, integers, + - * // and parentheses are allowed: a spec never runs code.
    """
    if not isinstance(expr, str):
        return expr
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise CnnlabError(f"{where}: '{expr}' is not a number or an expression like 2*NF") from None

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in values:
                known = ", ".join(f"{k}={v}" for k, v in values.items()) or "none"
                raise CnnlabError(f"{where}: the name '{node.id}' has no value; give it in model.args (known: {known})")
            return values[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise CnnlabError(f"{where}: '{expr}' may use only names, integers, + - * // and parentheses")

    return walk(tree)


def names_in(layers: list[Layer]) -> set[str]:
    """The hyper-parameter names a spec uses (for symbolic counting and for checking args)."""
    found: set[str] = set()
    for layer in layers:
        words = kind_of(layer.kind, layer.where()).words
        for key, val in layer.options.items():
            if isinstance(val, str) and key not in words:
                found |= {n.id for n in ast.walk(ast.parse(val, mode="eval")) if isinstance(n, ast.Name)}
    return found
