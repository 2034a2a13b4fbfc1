"""The blocks of one run's report, built from its records (summary.json, metrics.jsonl, architecture.json,
config.yaml): what it is and how it ended, the final metrics, curves, pictures of the best checkpoint,
architecture, per-epoch tables, data and configuration. Every format of the report is written from these."""

from __future__ import annotations

import json
from typing import Optional

from cnnlab import metrics
from cnnlab.config import changes
from cnnlab.document import Block, Code, Figure, Fixed, Heading, Table, Text
from cnnlab.engine.run_record import spread_line
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.runfolder import RunFolder
from cnnlab.viz.curves import plot_metric

ARCH_COLUMNS = ("params", "trainable_params", "frozen_params", "buffers", "macs")
ARCH_HEADER = ["layer", "type", "output shape", "parameters", "trainable", "frozen", "buffers", "MACs"]


def status_text(s: RunSummary, run_id: str) -> Text:
    ending = (s.stopped_early or {}).get("ending") or s.status
    ending += f": {s.error}" if s.error else ""
    threads = f" ({s.threads} thread{'s' if s.threads != 1 else ''})" if s.threads else ""
    lines = [
        f"Run {run_id}. Status: {ending}. {s.epochs_done} of {s.epochs} epochs in "
        f"{s.wall_seconds or 0:.1f} s on {s.device}{threads}, seed {s.seed}, {s.params or 0:,} parameters."
    ]
    if s.spread:
        lines.append(f"Under torchrun: {spread_line(s.spread)}.")
    return Text(lines)


def final_rows(s: RunSummary) -> list[list]:
    """The final epoch's metrics, the best checkpoint's test metrics, then the times (startup, training,
    training until each target test accuracy)."""
    final = s.final or {}
    keys = metrics.split_keys(final)
    key_of_best = metrics.monitored(s.task, s.monitor)
    monitor = metrics.label(key_of_best)
    rows = [[metrics.label(key), fixed(final.get(key), key)] for key in keys]
    rows.append([f"best {monitor} (epoch {s.best_epoch})", fixed(s.best_value, key_of_best)])
    rows += [
        [f"{metrics.label(key)} at best {monitor}", fixed(s.at(key), key)]
        for key in keys
        if key.startswith("test_") and key != "test_loss"
    ]
    rows += [
        [name, Fixed(v, 1)]
        for name, v in (
            ("startup (s): process start to the first step", s.startup_seconds),
            ("training time (s), evaluation apart", s.train_seconds),
        )
        if v is not None
    ]
    rows += [
        [f"training time (s) until test accuracy {target}", "not reached" if t is None else Fixed(t, 1)]
        for target, t in s.time_to.items()
    ]
    return rows


def initial_loss_text(s: RunSummary) -> Text:
    verdict = ""
    if s.initial_loss_verdict:  # runs before the verdict was recorded say nothing rather than guess
        check = "" if s.initial_loss_verdict == "as expected" else ": check the initialisation"
        verdict = f" ({100 * s.initial_loss_deviation:+.1f}%, {s.initial_loss_verdict}{check})"
    per_pixel = "; accuracy is per pixel" if s.task != "classify" else ""
    return Text(
        [
            [
                "Loss before training: ",
                s.initial_loss,
                f"; expected for an untrained model ln({len(s.classes)} classes) = ",
                s.expected_initial_loss,
                f"{verdict}. Training metrics are measured on the augmented batches during each epoch{per_pixel}.",
            ]
        ],
        note=True,
    )


def curve_notes(run: RunFolder, metric: str) -> dict:
    """The training loss is the one with label smoothing (validation and test report plain cross-entropy)."""
    try:
        smoothing = run.config().train.label_smoothing
    except CnnlabError:  # a config this version cannot read: no note rather than no report
        return {}
    return {"train": f"with label smoothing {smoothing:g}"} if metric == "loss" and smoothing else {}


def curve_figures(run: RunFolder, history: list[dict], s: RunSummary) -> list[Figure]:
    """One chart per metric family (loss, accuracy, IoU), the loss from epoch 0 where it was measured."""
    out = []
    for metric in metrics.families(metrics.all_keys(history)):
        title = f"{metrics.SPLIT_METRICS[metric].title} per epoch"
        initial = s.initial_loss if metric == "loss" else None
        png = plot_metric(
            history, metric, run.figures / f"{metric}.png", title=title, initial=initial, notes=curve_notes(run, metric)
        )
        out.append(
            Figure(
                title + (" (the point at epoch 0: before training)" if initial is not None else ""),
                png,
                png.with_suffix(".svg"),
                png.with_suffix(".pdf"),
            )
        )
    return out


def picture_blocks(run: RunFolder, s: RunSummary) -> list[Block]:
    """The best checkpoint's pictures (filters, activations, predictions) and per-class tables."""
    pictures = [
        Figure(f.get("caption") or f.get("title", ""), run.path / f["file"])
        for f in s.figures
        if (run.path / f["file"]).exists()
    ]
    out: list[Block] = []
    if s.look_inside:
        out.append(Heading("Look inside"))
        image = s.look_inside.get("image")
        layers = s.look_inside.get("layers") or {}
        out.append(
            Text(
                [
                    f"From the best checkpoint (epoch {s.best_epoch})."
                    + (
                        f" The image is {image['source']} (true class {image['true']}, predicted "
                        f"{image['predicted']} with p = {image['probability']:.2f}); the first convolution is "
                        f"{layers.get('first')}, the last {layers.get('last')}."
                        if image
                        else " The network has no convolution, so there are no filters or activation maps to show."
                    )
                    + " `cnnlab explain` draws the same for any image or layer."
                ],
                note=True,
            )
        )
    elif pictures:
        out += [
            Heading("Predictions"),
            Text(["From the best checkpoint, on fixed validation and test images."], note=True),
        ]
    out += pictures
    confusion = s.at("test_confusion")
    if confusion:
        out.append(class_accuracy_table(confusion, "Accuracy per class (test split, best checkpoint)"))
    iou = s.at("test_class_iou")
    if iou:
        out.append(
            Table(
                "IoU per class (test split, best checkpoint)",
                ["class", "IoU"],
                [[name, fixed(v, "test_iou")] for name, v in iou.items()],
                name="class-iou",
            )
        )
    return out + sparsity_blocks(s.sparsity)


def class_accuracy_table(confusion: dict, title: str) -> Table:
    """Per class (a row of the confusion counts): its test examples, how many were predicted right, the share."""
    rows = [
        [name, sum(row), row[i], Fixed(row[i] / sum(row)) if sum(row) else None]
        for i, (name, row) in enumerate(zip(confusion["classes"], confusion["counts"]))
    ]
    return Table(title, ["class", "test examples", "right", "accuracy"], rows, name="class-accuracy")


def sparsity_blocks(sp: Optional[dict]) -> list[Block]:
    if not sp:
        return []
    header = ["layer", "type", "weights", f"|w| < {sp['threshold']}", "share", "exactly 0", "share"]
    keys = ("weights", "below", "share_below", "zeros", "share_zero")
    rows = [
        [r["name"], r["type"], *(Fixed(r[k]) if k.startswith("share") else r[k] for k in keys)] for r in sp["layers"]
    ]
    total = ["total", "", *(Fixed(sp["total"][k]) if k.startswith("share") else sp["total"][k] for k in keys)]
    return [
        Heading("Sparsity of the weights"),
        Table("", header, rows, total, name="sparsity"),
        Text(
            [
                f"Sparsity: the share of weights whose magnitude is below {sp['threshold']} "
                f"(figures.sparsity_threshold), and of exact zeros; {sp['note']}."
            ],
            note=True,
        ),
    ]


def transfer_table(s: RunSummary) -> list[Block]:
    """What a torchvision model started from and what trained: the pretrained record, heads, trainable parts."""
    if not s.transfer:
        return []
    t, record = s.transfer, s.transfer.get("pretrained") or {}

    def names(values) -> str:
        return f"{len(values)}: {', '.join(values)}" if values else "none"

    rows = [
        ["new head(s)", ", ".join(t["heads"])],
        ["trainable", t["trainable"] if isinstance(t["trainable"], str) else ", ".join(t["trainable"])],
        ["head alone for the first epochs", t.get("unfreeze_after")],
        ["trainable / frozen parameters", f"{s.trainable_params or 0:,} / {s.frozen_params or 0:,}"],
        ["inputs normalised with", s.data.get("normalised_with", "-")],
    ]
    if record:
        rows += [
            ["pretrained", record["source"]],
            ["file read", record.get("file")],
            ["torchvision weights", record.get("weights")],
            ["tensors loaded", record.get("loaded")],
            ["head tensors skipped (shape changed)", names(record.get("skipped_head"))],
            ["missing from the file", names(record.get("missing"))],
            ["unexpected in the file", names(record.get("unexpected"))],
        ]
        if record.get("left_out"):
            rows.append(["parts not built", names(record.get("left_out"))])
    return [Heading("Transfer"), Table("", ["", ""], rows, name="transfer")]


def architecture_blocks(rows: list[dict]) -> list[Block]:
    """The per-layer table with totals; a count an older run folder lacks shows as '-'."""
    body = [
        [r.get("name", ""), r.get("type", ""), list(r.get("output_shape") or []), *(r.get(c) for c in ARCH_COLUMNS)]
        for r in rows
    ]
    total = [
        "total",
        "",
        "",
        *(
            sum(r[c] for r in rows) if rows and all(isinstance(r.get(c), int) for r in rows) else "-"
            for c in ARCH_COLUMNS
        ),
    ]  # '-': a count an older run lacks
    return [
        Heading("Architecture"),
        Table("", ARCH_HEADER, body, total, name="architecture"),
        Text(
            [
                "Parameters are the module's parameters (batch norm: 2 per channel), trainable or frozen as "
                "model.trainable selects them; buffers (batch-norm running statistics) are not weights and are "
                "counted apart. MACs are multiply-accumulates of weights per image (biases apart; FLOPs = 2 x MACs). "
                "`cnnlab summary` gives the full table."
            ],
            note=True,
        ),
    ]


def fixed(value, key: str):
    """A recorded metric with the decimals the vocabulary gives it (whole numbers for images/s); None stays."""
    if value is None:
        return None
    d = metrics.digits(key)
    return Fixed(value, d) if d else round(value)


PAGE_COLUMNS = 9  # a per-epoch table wider than this is split, so that every column fits a printed page


def epoch_tables(history: list[dict]) -> list[Block]:
    """The per-epoch record in tables that each fit a page: the metrics (with the learning rate; one table per metric
    family when they are too many for one: loss and accuracy, IoU, ...), then the timings."""
    if not history:
        return []
    present = metrics.all_keys(history)
    timing = [k for k in metrics.epoch_keys(present) if k in metrics.TIMING_KEYS]
    rest = [k for k in metrics.epoch_keys(present) if k not in timing]
    learning = metrics.split_keys(present) + rest
    groups = [("Metrics", learning, "epochs-metrics")]
    if len(learning) >= PAGE_COLUMNS:
        split = [
            (m, [metrics.split_key(s, m) for s in metrics.SPLITS if metrics.split_key(s, m) in present])
            for m in metrics.families(present)
        ]
        groups = [
            (f"Metrics: {metrics.SPLIT_METRICS[m].label}", keys + (rest if i == 0 else []), f"epochs-{m}")
            for i, (m, keys) in enumerate(split)
        ]
    out: list[Block] = [Heading("Per epoch")]
    for title, keys, name in [*groups, ("Time and speed", timing, "epochs-timing")]:
        if keys:
            header = ["epoch"] + [metrics.label(k, unit=k in metrics.EPOCH_METRICS) for k in keys]
            out.append(
                Table(
                    title, header, [[row["epoch"]] + [fixed(row.get(k), k) for k in keys] for row in history], name=name
                )
            )
    return out


def peak_note(s: RunSummary) -> list[Block]:
    """Which peak the per-epoch share is of, in words (nothing for a run recorded before peaks were)."""
    p = s.peak
    if not p:
        return []
    busy = (
        " The machine was busy when it was measured, so the share may read high; the first run on a calm "
        "machine measures it again."
        if p.get("busy")
        else ""
    )
    return [
        Text(
            [
                f"Share of peak: training throughput (6 FLOPs per weight multiply-accumulate per training image) "
                f"over {p['gflops']:,.1f} GFLOP/s, the {p['precision']} {p['size']}x{p['size']} matrix product "
                f"measured on this machine ({p['key']}; measured {p['measured']}).{busy}"
            ],
            note=True,
        )
    ]


def data_and_config(run: RunFolder, s: RunSummary) -> list[Block]:
    d = s.data
    out: list[Block] = [
        Heading("Data"),
        Text(
            [
                f"{d.get('source', '-')}: {d.get('train', '-')} training, "
                f"{d.get('val', '-')} validation, {d.get('test', '-')} test images; "
                f"classes: {', '.join(s.classes)}."
            ]
        ),
    ]
    out.append(Heading("Configuration"))
    try:
        chosen = changes(run.config())
    except CnnlabError:  # a config this version cannot read: the file alone is shown
        chosen = []
    if chosen:
        out.append(
            Table(
                "What this run sets (every other key has its default)",
                ["key", "value", "default"],
                [[k, _shown(v), _shown(dv)] for k, v, dv in chosen],
                name="config",
            )
        )
    out.append(Code(run.config_path.read_text(), "The whole resolved config (config.yaml)", folded=True))
    return out


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_blocks(run: RunFolder, s: RunSummary, history: list[dict]) -> list[Block]:
    """The report of a run, in order."""
    return [
        Heading(s.name, 1),
        status_text(s, run.path.name),
        Heading("Final metrics"),
        Table("", ["metric", "value"], final_rows(s), name="final"),
        initial_loss_text(s),
        Heading("Curves"),
        *curve_figures(run, history, s),
        *picture_blocks(run, s),
        *transfer_table(s),
        *architecture_blocks(run.architecture()),
        *epoch_tables(history),
        *peak_note(s),
        *data_and_config(run, s),
    ]
