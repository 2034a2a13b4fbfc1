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
MAX_SIZE = 65_536  # the largest channel count, kernel, stride, padding or scale a spec may give
MAX_EXPRESSION = 200  # characters of one value's expression (2*NF + k//2 is 9)
SMALLEST = {"out": 1, "k": 1, "s": 1, "p": 0, "groups": 1, "scale": 1, "in": 1}  # sizes: whole numbers from here
NOT_SIZES = {("dropout", "p")}  # (kind, option): a dropout's p is a probability, checked by its kind


@dataclass(frozen=True)
class Layer:
    """One parsed layer: its kind, its options (numbers or expression text) and where it came from."""

    kind: str
    options: dict[str, Value] = field(default_factory=dict)
    text: str = ""
    index: int = 0  # 1-based position in the spec, for messages

    def where(self) -> str:
        return where_of(self.text, self.index)


def short(text: str, most: int = 80) -> str:
    """`text` as a message shows it: whole when short, else its start and '...'."""
    return text if len(text) <= most else text[: most - 3] + "..."


def where_of(text: str, index: int) -> str:
    """'layer 3 'conv 8 k3'': a layer as messages name it."""
    return f"layer {index} '{short(text)}'"


def split_layers(spec: str | list[str]) -> list[str]:
    if isinstance(spec, str):
        parts = re.split(r"->|\n", spec)
    else:
        parts = list(spec)
    return [p.strip() for p in parts if p.strip() and not p.strip().startswith("#")]


def check_size(kind: str, option: str, value: Value, where: str) -> Value:
    """Refuse a size (channels, kernel, stride, padding, scale) that is not a whole number from its smallest
    allowed value up to MAX_SIZE: `conv 0`, `dense -1` and `conv 1e9` are mistakes to name now, not in training."""
    low = None if (kind, option) in NOT_SIZES else SMALLEST.get(option)
    if low is None or isinstance(value, str) or not isinstance(value, (int, float)):
        return value  # not a size, an expression (checked once evaluated) or a symbol (formulas)
    if value != int(value) or not low <= value <= MAX_SIZE:
        raise CnnlabError(f"{where}: {option} is {value:g}; it must be a whole number from {low} to {MAX_SIZE:,}")
    return int(value)


def _expression(word: str, where: str) -> str:
    """An expression in named hyper-parameters, checked now for its length and form, evaluated when built."""
    if len(word) > MAX_EXPRESSION:
        raise CnnlabError(f"{where}: an expression of {len(word):,} characters; write at most {MAX_EXPRESSION}")
    try:
        ast.parse(word, mode="eval")
    except SyntaxError:
        raise CnnlabError(
            f"{where}: '{word}' is not a number or an expression like 2*NF (are its parentheses balanced?)"
        ) from None
    return word


def _value(word: str, kind: str, option: str, words: frozenset[str], where: str) -> Value:
    if option in words:
        return word
    for number in (int, float):
        try:
            return check_size(kind, option, number(word), where)
        except ValueError:
            pass
    return _expression(word, where)


def parse_layer(text: str, index: int) -> Layer:
    words = text.split()
    kind, where = words[0], where_of(text, index)
    record = kind_of(kind, where)
    positional, defaults = record.positional, record.options
    options: dict[str, Value] = {}
    pending = list(positional)
    known = ", ".join(defaults) or "none"
    for word in words[1:]:
        if "=" in word:
            key, val = word.split("=", 1)
        elif (m := SHORTHAND.match(word)) and m.group(1) in defaults:
            key, val = m.group(1), m.group(2)
        elif pending:
            key, val = pending[0], word
        else:
            raise CnnlabError(f"{where}: cannot read '{short(word)}'; options of {kind}: {known}")
        if key not in defaults:
            raise CnnlabError(
                f"{where}: unknown option '{short(key)}'{did_you_mean(key, defaults)}; options of {kind}: {known}"
            )
        if key in pending:
            pending.remove(key)
        options[key] = _value(val, kind, key, record.words, where)
    for key, default in defaults.items():
        if key not in options:
            if default is REQUIRED:
                raise CnnlabError(f"{where}: missing '{key}' (e.g. '{kind} {'32' if key == 'out' else 'x'}')")
            options[key] = default
    return Layer(kind, options, text, index)


def parse_spec(spec: str | list[str]) -> list[Layer]:
    texts = split_layers(spec)
    if not texts:
        raise CnnlabError(
            "the model spec is empty; write layers like 'conv 32 k3 p1 -> act -> flatten -> dense classes'"
        )
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
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.FloorDiv) and isinstance(right, (int, float)) and right == 0:
                raise CnnlabError(f"{where}: '{expr}' divides by zero")
            return _BINARY[type(node.op)](left, right)
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
