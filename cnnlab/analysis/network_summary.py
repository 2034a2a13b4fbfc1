"""`cnnlab summary`: one public entry over a short pipeline (after torchinfo).

resolve MODEL -> build it at the input size (or write its formulas, --symbolic) -> count the rows
-> totals, per-type breakdown, one training step (estimated, and measured where cheap)
-> what torchinfo, fvcore or Keras would print (--as) -> the what-if variant beside it
-> a document (terminal, Markdown, LaTeX) or JSON.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import sympy as sp

from cnnlab.analysis.conventions import CNNLAB, PeerCount, check_peers, peer_count
from cnnlab.analysis.count import COUNT_COLUMNS, LayerCount, count, totals
from cnnlab.analysis.explain import explained_rows, features_note
from cnnlab.document import Block, Table, Text, human_bytes, line_text
from cnnlab.analysis.symbolic import SpecFormulas, tidy
from cnnlab.optimizers import OPTIMIZERS
from cnnlab.analysis.step_cost import StepMeasurement, StepMemory, estimate_step, measure_step
from cnnlab.analysis.whatif import (
    Converted,
    WhatIf,
    match_rows,
    no_bn_module,
    ratio,
    scale_notes,
    scaled,
    separable_module,
    separable_spec,
    speedup_formula,
)
from cnnlab.device import pick_device
from cnnlab.analysis.subject import Subject
from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.records import Counts, Provenance

ALL_COLUMNS = (
    "name",
    "type",
    "input_shape",
    "output_shape",
    "weights",
    "biases",
    "params",
    "trainable_params",
    "frozen_params",
    "buffers",
    "macs",
    "bias_adds",
    "activation_bytes",
)
DEFAULT_COLUMNS = ("name", "type", "output_shape", "weights", "biases", "params", "buffers", "macs", "activation_bytes")
LABELS = {
    "name": "layer",
    "type": "type",
    "input_shape": "input",
    "output_shape": "output",
    "weights": "weights",
    "biases": "biases",
    "params": "params",
    "trainable_params": "trainable",
    "frozen_params": "frozen",
    "buffers": "buffers",
    "macs": "MACs",
    "bias_adds": "bias adds",
    "activation_bytes": "activation bytes",
}
JSON_ROW_KEYS = (
    "name",
    "type",
    "output_shape",
    "weights",
    "biases",
    "params",
    "trainable_params",
    "buffers",
    "macs",
    "activation_bytes",
    "bias_adds",
    "frozen_params",
    "input_shape",
    "call",
)
MEASURE_BUDGET_MACS = 2e8  # measure a step by default only when its forward pass is this cheap (instant on a CPU)

# the main table's columns that may be left out to fit a narrow terminal, the first first
NARROW_DROP = ("biases", "weights", "buffers", "type", "activation bytes", "output")


@dataclass
class Options:
    symbolic: bool = False
    given: dict = field(default_factory=dict)  # NAME=VALUE for the model's names and the input's names
    whatif: WhatIf = WhatIf()
    explain: bool = False
    batch_size: int = 32
    optimizer: Optional[str] = None  # sgd | momentum | adam | adamw (default: the experiment's, else momentum)
    measure: Optional[bool] = None  # None: measure when one step is cheap
    device: str = "auto"
    peers: list[str] = field(default_factory=list)  # --as: torchinfo, fvcore, keras


@dataclass
class Counted:
    """One table: rows, totals and what goes with them."""

    label: str
    input: tuple
    rows: list[LayerCount]
    total: dict
    symbolic: bool = False
    assumptions: str = ""
    step: Optional[StepMemory] = None
    measured: Optional[StepMeasurement] = None
    notes: list[str] = field(default_factory=list)
    explain: Optional[list] = None
    explain_notes: list[str] = field(default_factory=list)
    peers: list[PeerCount] = field(default_factory=list)


@dataclass
class Summary:
    base: Counted
    variant: Optional[Counted] = None
    whatif: WhatIf = WhatIf()
    converted: list[Converted] = field(default_factory=list)


def concrete(shape: tuple, values: dict) -> tuple[int, ...]:
    """An input shape with its names replaced by values (numbers only)."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
        elif isinstance(d, str) and d in values:
            out.append(int(values[d]))
        else:
            value = sp.sympify(d).subs({sp.Symbol(n, integer=True, positive=True): v for n, v in values.items()})
            if value.free_symbols:
                raise CnnlabError(f"the input size {d} has no value; give it with --set {d}=32 (or use --symbolic)")
            out.append(int(value))
    return tuple(out)


# ---- numbers ----------------------------------------------------------------------------------


def _numeric(model, shape: tuple, label: str, opts: Options, optim, measure: bool) -> Counted:
    rows = count(model, shape)
    counted = Counted(label, shape, rows, totals(rows))
    try:
        counted.step = estimate_step(model, shape, opts.batch_size, optim, macs_per_image=counted.total["macs"])
    except Exception as e:  # e.g. BatchNorm1d at batch size 1
        counted.notes.append(f"training step not estimated: {str(e).splitlines()[0]}")
    if not measure:
        return counted
    cheap = counted.step is not None and counted.step.forward_macs <= MEASURE_BUDGET_MACS
    if opts.measure or (opts.measure is None and cheap):
        try:
            counted.measured = measure_step(model, shape, opts.batch_size, optim, pick_device(opts.device))
        except CnnlabError:
            raise
        except Exception as e:
            counted.notes.append(f"training step not measured: {str(e).splitlines()[0]}")
    elif counted.step is not None:
        counted.notes.append(
            f"training step not measured: its forward pass is {counted.step.forward_macs / 1e9:.2f} GMAC "
            f"at batch size {opts.batch_size}; add --measure to run it"
        )
    return counted


def _explain(counted: Counted) -> None:
    counted.explain = explained_rows(counted.rows)
    note = features_note(counted.rows, counted.input)
    if note:
        counted.explain_notes.append(note)


def _variant_numeric(subject: Subject, model, shape: tuple, opts: Options) -> tuple[object, tuple, list[Converted]]:
    w = opts.whatif
    vshape = scaled(shape, w.scale)
    converted: list[Converted] = []
    if subject.recipe is not None:
        recipe = subject.recipe
        options = replace(recipe.options, bn=False) if w.no_bn else recipe.options
        if w.separable:
            values = {**recipe.values, "in_channels": shape[0]}
            layers, converted = separable_spec(list(recipe.layers), values, options)
            recipe = replace(recipe, layers=tuple(layers))
        return recipe.build(vshape, options), vshape, converted
    if w.separable:
        model, converted = separable_module(model)
    if w.no_bn:
        model = no_bn_module(model)
    return model, vshape, converted


def summarise_numeric(subject: Subject, in_shape: tuple, opts: Options) -> Summary:
    shape = concrete(in_shape, opts.given)
    optim = OPTIMIZERS[opts.optimizer] if opts.optimizer else (subject.optim or OPTIMIZERS["momentum"])
    model = subject.build(shape)
    base = _numeric(model, shape, subject.label, opts, optim, measure=True)
    base.peers = [peer_count(tool, model, base.rows, base.total, shape) for tool in check_peers(opts.peers)]
    if opts.explain:
        _explain(base)
    summary = Summary(base, whatif=opts.whatif)
    if opts.whatif:
        vmodel, vshape, summary.converted = _variant_numeric(subject, model, shape, opts)
        summary.variant = _numeric(
            vmodel, vshape, f"{subject.label}, {opts.whatif.label()}", opts, optim, measure=False
        )
    return summary


# ---- formulas ---------------------------------------------------------------------------------


def _formulas(recipe, shape: tuple, given: dict, options, layers=None, assume=None) -> tuple[list, dict, object]:
    f = SpecFormulas(list(layers if layers is not None else recipe.layers), shape, given, options)
    assume = assume or f.assumptions()
    rows, total = f.rows(assume)
    return rows, total, assume


def _check_against_module(subject: Subject, shape: tuple, given: dict, rows: list[LayerCount]) -> str:
    """With every name given, the formulas are numbers: compare them with the built module, cell by cell.

    A difference means the formulas are wrong, so no table is printed: it is an error naming the first wrong cell.
    """
    values = {k: v for k, v in given.items() if k in subject.recipe.names}
    model = subject.recipe.with_values(values).build(concrete(shape, given))
    real = count(model, concrete(shape, given))
    cells = 0
    for a, b in zip(rows, real):
        for c in COUNT_COLUMNS + ("output_shape",):
            got, want = getattr(a, c), getattr(b, c)
            got = [int(x) for x in got] if c == "output_shape" else int(got)
            if got != want:
                raise CnnlabError(
                    f"self-check failed at {a.name} {c}: the formula gives {got}, the built module {want}; "
                    "the formulas are wrong here (please report this); leave out --symbolic for the numbers"
                )
            cells += 1
    if len(rows) != len(real):
        raise CnnlabError(
            f"self-check failed: {len(rows)} formula rows but the built module has {len(real)} layers "
            "(please report this); leave out --symbolic for the numbers"
        )
    return f"checked: the formulas at these values equal the counts of the built torch module in all {cells} cells"


def summarise_symbolic(subject: Subject, in_shape: tuple, opts: Options) -> Summary:
    if subject.recipe is None:
        raise CnnlabError(
            f"{subject.label} is not a spec network; "
            "--symbolic needs a zoo spec, a spec file or an experiment with a spec"
        )
    if opts.peers:
        raise CnnlabError(
            "--as counts numbers, not formulas: leave out --symbolic (give the names with --set, e.g. --set NF=32)"
        )
    recipe = subject.recipe
    given = {**recipe.given, **opts.given}
    rows, total, assume = _formulas(recipe, in_shape, given, recipe.options)
    base = Counted(subject.label, in_shape, rows, total, symbolic=True, assumptions=assume.text())
    free = set().union(*(sp.sympify(v).free_symbols for v in total.values()))
    if not free:
        base.notes.append(_check_against_module(subject, in_shape, given, rows))
    else:
        base.notes.append("training-step memory: numbers only (give every name with --set, or leave out --symbolic)")
    if opts.explain:
        values = {**recipe.defaults, **given}
        input_defaults = {d: v for d, v in zip(in_shape, subject.input or ()) if isinstance(d, str)}  # H=32, W=32 ...
        shape = concrete(in_shape, {**input_defaults, **values})
        example = _numeric(
            subject.recipe.with_values({k: v for k, v in values.items() if k in recipe.names}).build(shape),
            shape,
            subject.label,
            opts,
            OPTIMIZERS["momentum"],
            measure=False,
        )
        _explain(example)
        base.explain, base.explain_notes = example.explain, example.explain_notes
        names = ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if k in recipe.names)
        base.explain_notes.insert(0, f"explained at {names}{', ' if names else ''}input {'x'.join(map(str, shape))}")
    summary = Summary(base, whatif=opts.whatif)
    if opts.whatif:
        w = opts.whatif
        options = replace(recipe.options, bn=False) if w.no_bn else recipe.options
        layers = list(recipe.layers)
        if w.separable:
            values, _ = SpecFormulas(layers, in_shape, given, options).values(given)
            layers, summary.converted = separable_spec(layers, values, options)
        vshape = scaled(in_shape, w.scale)
        vrows, vtotal, _ = _formulas(recipe, vshape, given, options, layers=layers, assume=assume)
        summary.variant = Counted(
            f"{subject.label}, {w.label()}", vshape, vrows, vtotal, symbolic=True, assumptions=assume.text()
        )
    return summary


def summarise(subject: Subject, in_shape: tuple, opts: Options) -> Summary:
    if subject.own and (opts.symbolic or opts.whatif.scale):
        raise CnnlabError(
            f"--{'symbolic' if opts.symbolic else 'scale'} is for spec networks (zoo, spec, experiment "
            f"with a spec); {subject.label} is your own module: count it at a size with --input CxHxW"
        )
    if opts.symbolic:
        return summarise_symbolic(subject, in_shape, opts)
    return summarise_numeric(subject, in_shape, opts)


# ---- the document -----------------------------------------------------------------------------


def check_columns(columns: Optional[list[str]], rows: list[LayerCount]) -> list[str]:
    if not columns:
        cols = list(DEFAULT_COLUMNS)
        if any(r.frozen_params for r in rows):
            cols.insert(cols.index("params") + 1, "frozen_params")
        return cols
    unknown = [c for c in columns if c not in ALL_COLUMNS]
    if unknown:
        close = "".join(did_you_mean(c, ALL_COLUMNS) for c in unknown)
        raise CnnlabError(f"unknown column(s) {', '.join(unknown)}{close}; choose from: {', '.join(ALL_COLUMNS)}")
    return list(columns)


def _value(row: LayerCount, column: str):
    if column == "name":
        return row.name + (f" (call {row.call})" if row.call > 1 else "")
    return getattr(row, column)


def _total(total: dict, column: str):
    if column == "name":
        return "total"
    if column == "frozen_params":
        return total["params"] - total["trainable_params"]
    return total.get(column, "")


def by_type(rows: list[LayerCount], show=lambda v: v) -> list[dict]:
    """Params, MACs and activation bytes summed per layer type (`show` tidies formulas)."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r.type, {"type": r.type, "layers": 0, "params": 0, "macs": 0, "activation_bytes": 0})
        g["layers"] += 1
        for c in ("params", "macs", "activation_bytes"):
            g[c] = g[c] + getattr(r, c)
    for g in groups.values():
        for c in ("params", "macs", "activation_bytes"):
            g[c] = show(g[c])
    return list(groups.values())


def _shape_text(shape) -> str:
    return "x".join(f"({d})" if isinstance(d, sp.Add) else str(d).replace("**", "^") for d in shape)


def _type_table(c: Counted) -> Table:
    """Per layer type: how many layers, their parameters, MACs (and share of them) and activation memory."""
    t = c.total
    share = not c.symbolic and t["macs"]
    rows = [
        [g["type"], g["layers"], g["params"], g["macs"]]
        + ([100.0 * g["macs"] / t["macs"]] if share else [])
        + [g["activation_bytes"]]
        for g in by_type(c.rows, tidy if c.symbolic else (lambda v: v))
    ]
    header = ["type", "layers", "params", "MACs"] + (["MACs %"] if share else []) + ["activation bytes"]
    return Table("by layer type", header, rows, drop=("activation bytes", "MACs %", "layers"))


def counted_blocks(c: Counted, columns: list[str], drop: tuple = ()) -> list[Block]:
    per = "formulas" if c.symbolic else "counts"
    blocks: list[Block] = [
        Table(
            f"{c.label}: input {_shape_text(c.input)}, {per} per image",
            [LABELS[k] for k in columns],
            [[_value(r, k) for k in columns] for r in c.rows],
            [_total(c.total, k) for k in columns],
            drop,
        )
    ]
    t = c.total
    lines = [
        [
            "params ",
            t["params"],
            " (trainable ",
            t["trainable_params"],
            ", frozen ",
            t["params"] - t["trainable_params"],
            "); buffers ",
            t["buffers"],
        ],
        ["MACs ", t["macs"], " per image; FLOPs = 2 x MACs = ", 2 * t["macs"], "; bias additions ", t["bias_adds"]],
    ]
    if c.assumptions:
        lines.append(
            f"formulas shown for {c.assumptions}; "
            "evaluations use the exact formulas (with floor), which hold for any values"
        )
    blocks.append(Text(lines, "totals"))
    blocks.append(_type_table(c))
    if c.step is not None:
        blocks.append(step_table(c.step, c.measured))
    if c.notes:
        blocks.append(Text(c.notes))
    blocks += [peer_text(p) for p in c.peers]
    if c.explain is not None:
        blocks.append(
            Table(
                "shape arithmetic: output size = floor((W - F + 2P)/S) + 1",
                ["layer", "input", "output", "arithmetic"],
                c.explain,
            )
        )
        if c.explain_notes:
            blocks.append(Text(c.explain_notes))
    return blocks


def peer_text(p: PeerCount) -> Text:
    """What the tool prints, its figure as cnnlab's MACs plus the differences, and its convention in words."""
    printed = [
        part for label, value in p.figures for part in ("; " if label != p.figures[0][0] else "", f"{label} ", value)
    ]
    if p.shown:
        printed.append(f" (printed as '{p.shown}')")
    sums: list = [f"{p.figures[0][0]} ", p.figures[0][1], " = "]
    for i, (label, value) in enumerate(p.parts):
        sums += ["" if i == 0 else " - " if value < 0 else " + ", abs(value), f" {label}"]
    return Text([[f"{p.call}: "] + printed, sums, f"convention: {p.words}"], f"as {p.tool} counts it")


def step_table(step: StepMemory, measured: Optional[StepMeasurement]) -> Table:
    rows = [
        ["parameters", step.parameters, "every parameter"],
        ["buffers", step.buffers, "BatchNorm running statistics and other buffers"],
        ["gradients", step.gradients, "one per trainable parameter"],
        ["optimizer state", step.optimizer_state, step.optimizer],
        [
            "saved activations",
            step.saved_activations,
            f"kept by autograd for the backward pass, from {step.first_saving or 'no layer'} on",
        ],
        ["input batch", step.input_batch, f"{step.batch_size} images"],
        [
            "estimate",
            step.total,
            f"{human_bytes(step.total)}; leaves out the backward pass's temporaries "
            "(gradients of activations), which the measured split shows",
        ],
    ]
    if measured is not None:
        kinds = ", ".join(f"{k} {human_bytes(v)}" for k, v in measured.by_kind.items())
        rows.append(
            ["measured peak", measured.peak_bytes, f"{human_bytes(measured.peak_bytes)} on {measured.device}: {kinds}"]
        )
        if measured.allocator_peak_bytes is not None:
            rows.append(["CUDA allocator peak", measured.allocator_peak_bytes, "torch.cuda.max_memory_allocated"])
    title = (
        f"one training step at batch size {step.batch_size} ({step.optimizer}, float32): memory in bytes; "
        f"forward pass {step.forward_macs:,} MACs"
        + (f", backward {step.backward_macs:,}" if step.backward_macs is not None else "")
    )
    return Table(title, ["", "bytes", "what"], rows)


def whatif_blocks(s: Summary, columns: list[str], drop: tuple = ()) -> list[Block]:
    base, var = s.base, s.variant
    blocks = counted_blocks(var, columns, drop)
    keys = [("params", "params"), ("buffers", "buffers"), ("macs", "MACs"), ("activation_bytes", "activation bytes")]
    rows = [[label, base.total[k], var.total[k], ratio(var.total[k], base.total[k])] for k, label in keys]
    if base.step is not None and var.step is not None:
        rows.append(
            ["training step estimate (bytes)", base.step.total, var.step.total, ratio(var.step.total, base.step.total)]
        )
    blocks.append(
        Table(
            f"what changed: {s.whatif.label()} (factor = after / before)", ["total", "before", "after", "factor"], rows
        )
    )
    changed = []
    for name, before, after in match_rows(base.rows, var.rows, s.converted):
        b = {k: getattr(before, k) if before is not None else 0 for k, _ in keys}
        a = {k: sum((getattr(r, k) for r in after), 0) for k, _ in keys}
        if any(sp.expand(a[k] - b[k]) != 0 for k, _ in keys):
            note = (
                "removed"
                if not after
                else "added"
                if before is None
                else "depthwise + pointwise"
                if len(after) == 2
                else "changed"
            )
            changed.append([name, note] + [x for k, _ in keys for x in (b[k], a[k])])
    if changed:
        header = ["layer", "now"] + [f"{label} {when}" for _, label in keys for when in ("before", "after")]
        blocks.append(
            Table(
                "layers that changed",
                header,
                changed,
                drop=(("activation bytes before", "activation bytes after"), ("buffers before", "buffers after")),
            )
        )
    if s.whatif.scale:
        same = sp.expand(var.total["params"] - base.total["params"]) == 0
        title = "why the parameters stay the same" if same else "why only some parameters grow"
        blocks.append(Text(scale_notes(base.rows, var.rows, s.whatif.scale), title))
    if s.converted:
        blocks.append(separable_table(s))
    return blocks


def separable_table(s: Summary) -> Table:
    base = {r.name: r for r in s.base.rows if r.call == 1}
    var = {r.name: r for r in s.variant.rows if r.call == 1}
    rows = []
    for conv in s.converted:
        before = base[conv.name]
        after = [var[n] for n in conv.parts]
        macs_after = sum((r.macs for r in after), 0)
        params_after = sum((r.params for r in after), 0)
        exact = ratio(before.macs, macs_after)
        formula = speedup_formula(conv.k, conv.out)
        formula = float(formula) if formula.is_number else formula
        limit = sp.sympify(conv.k) ** 2
        rows.append(
            [
                conv.name,
                conv.k,
                conv.out,
                before.params,
                params_after,
                before.macs,
                macs_after,
                exact,
                formula,
                int(limit) if limit.is_Integer else limit,
            ]
        )
    net = ratio(s.base.total["macs"], s.variant.total["macs"])
    title = (
        "depthwise separable: speed-up in MACs per layer, exact (counted) and "
        "k^2*Cout/(k^2 + Cout) = 1/(1/Cout + 1/k^2) "
        "(exact for each layer: biases are not MACs), which tends to k^2 for Cout >> k^2; "
        f"whole network: {_ratio_text(net)}"
    )
    return Table(
        title,
        [
            "layer",
            "k",
            "Cout",
            "params before",
            "params after",
            "MACs before",
            "MACs after",
            "speed-up exact",
            "k^2*Cout/(k^2+Cout)",
            "limit k^2",
        ],
        rows,
        drop=("limit k^2", "k^2*Cout/(k^2+Cout)", "params before", "params after", "k", "Cout"),
    )


def _ratio_text(r) -> str:
    return "-" if r is None else (f"{r:.2f}x" if isinstance(r, float) else str(r).replace("**", "^"))


def document(s: Summary, columns: Optional[list[str]] = None) -> list[Block]:
    """The whole summary as blocks; the columns chosen with --columns are kept however narrow the terminal."""
    cols = check_columns(columns, s.base.rows)
    drop = () if columns else NARROW_DROP
    blocks = counted_blocks(s.base, cols, drop)
    if s.variant is not None:
        blocks += whatif_blocks(s, cols, drop)
    blocks.append(Text(CNNLAB, "conventions"))
    return blocks


def main_table(s: Summary, columns: Optional[list[str]] = None) -> Table:
    """The per-layer table alone (for --csv)."""
    return counted_blocks(s.base, check_columns(columns or list(ALL_COLUMNS), s.base.rows))[0]


# ---- JSON -------------------------------------------------------------------------------------


def _plain(v):
    """JSON-safe: ints stay ints, formulas become text (sympy syntax), shapes lists."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, sp.Basic):
        return int(v) if v.is_Integer else str(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def counted_json(c: Counted) -> dict:
    out = {
        "model": c.label,
        "input": _plain(list(c.input)),
        "symbolic": c.symbolic,
        "layers": [{k: _plain(getattr(r, k)) for k in JSON_ROW_KEYS} for r in c.rows],
        "total": {k: _plain(v) for k, v in c.total.items()},
        "by_type": [
            {k: _plain(v) for k, v in g.items()} for g in by_type(c.rows, tidy if c.symbolic else (lambda v: v))
        ],
    }
    out["total"]["flops"] = _plain(2 * c.total["macs"])
    if c.assumptions:
        out["assumptions"] = c.assumptions
    if c.step is not None:
        out["training"] = c.step.as_dict()
        if c.measured is not None:
            out["training"]["measured"] = c.measured.as_dict()
    if c.notes:
        out["notes"] = c.notes
    if c.peers:
        out["as"] = [p.as_dict() for p in c.peers]
    if c.explain is not None:
        out["explain"] = [
            {"name": r[0], "input": _plain(r[1]), "output": _plain(r[2]), "arithmetic": r[3]} for r in c.explain
        ]
        out["explain_notes"] = c.explain_notes
    return out


def _whatif_json(s: Summary) -> dict:
    compare = {
        k: _plain(ratio(s.variant.total[k], s.base.total[k])) for k in ("params", "buffers", "macs", "activation_bytes")
    }
    out = {"change": s.whatif.label(), "variant": counted_json(s.variant), "factor": compare}
    if s.whatif.scale:
        out["why"] = [line_text(line, "table") for line in scale_notes(s.base.rows, s.variant.rows, s.whatif.scale)]
    if s.converted:
        names = [
            "layer",
            "k",
            "cout",
            "params_before",
            "params_after",
            "macs_before",
            "macs_after",
            "speedup_exact",
            "speedup_formula",
            "limit",
        ]
        out["separable"] = [dict(zip(names, map(_plain, row))) for row in separable_table(s).rows]
    return out


def counts_record(s: Summary) -> Counts:
    """The count as a record (what `--format json` prints and the Python API returns)."""
    out = {**counted_json(s.base), **dataclasses.asdict(Provenance.now())}
    out["conventions"] = CNNLAB
    if s.variant is not None:
        out["whatif"] = _whatif_json(s)
    return Counts.from_dict(out, Path("(count in memory)"))


def subject_and_input(
    model: str, assignments: list[str], input_text: Optional[str], symbolic: bool, data_dir=None
) -> tuple[Subject, tuple, dict]:
    """Resolve MODEL with its NAME=VALUE list: (subject, input shape, all given values).

    Names in the input (1xHxW, and H and W by default with --symbolic) are input sizes; the rest are
    the model's hyper-parameters.
    """
    from cnnlab.analysis.subject import parse_assignments, parse_input, resolve
    from cnnlab.models.user import is_user_model

    given = parse_assignments(assignments, whole=not is_user_model(model))
    in_shape = parse_input(input_text) if input_text else None
    input_names = {d for d in in_shape if isinstance(d, str)} if in_shape else ({"H", "W"} if symbolic else set())
    subject = resolve(model, [f"{k}={v}" for k, v in given.items() if k not in input_names], data_dir, in_shape)
    if in_shape is None:
        if subject.input is None:
            raise CnnlabError(f"give the input size with --input CxHxW (e.g. --input 3x32x32); {model} does not say it")
        in_shape = (subject.input[0], "H", "W") if symbolic else tuple(subject.input)
    return subject, in_shape, given
