"""The engine's parts on their own and through real runs: the checkpoint policy (max and min), train.monitor,
last.pt files written before the policy had its own state, torch's process-wide flags, how a run ends
(stopped, pruned), and the run report drawing every metric family a run records."""

import math

import pytest
import torch

from cnnlab import metrics
from cnnlab.engine import checkpoint
from cnnlab.engine.checkpoint import CheckpointPolicy
from cnnlab.engine.flags import torch_flags
from cnnlab.engine.trainer import Progress, Pruned
from cnnlab.errors import CnnlabError
from cnnlab.records import RunSummary
from cnnlab.report.run_report import write_run_report
from cnnlab.runfolder import RunFolder
from cnnlab.runner import resume_run, start_run
from tests.conftest import quick_config

ROWS = [
    {"epoch": 1, "val_loss": 0.9, "val_acc": 0.5},
    {"epoch": 2, "val_loss": math.nan, "val_acc": 0.7},
    {"epoch": 3, "val_loss": 0.4, "val_acc": 0.7},
    {"epoch": 4, "val_loss": 0.6, "val_acc": 0.6},
]


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in metrics.TIMING_KEYS} for r in rows]


def test_checkpoint_policy_keeps_the_lowest_or_the_highest():
    low, high = CheckpointPolicy("val_loss", "min"), CheckpointPolicy("val_acc", "max")
    assert [low.update(r) for r in ROWS] == [True, False, True, False]  # a NaN is never best
    assert [high.update(r) for r in ROWS] == [True, True, False, False]  # a tie keeps the earlier epoch
    assert (low.best_epoch, low.best_value, high.best_epoch, high.best_value) == (3, 0.4, 2, 0.7)
    again = CheckpointPolicy("val_loss", "min")
    again.load_state_dict(low.state_dict())
    assert (
        again.best_epoch == 3
        and not again.update({"epoch": 5, "val_loss": 0.5})
        and again.update({"epoch": 6, "val_loss": 0.3})
    )
    with pytest.raises(CnnlabError, match="monitors max val_acc"):
        CheckpointPolicy("val_acc", "max").load_state_dict(low.state_dict())


def test_torch_flags_come_back_after_a_run_and_after_an_error():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with torch_flags(True):
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    with pytest.raises(RuntimeError), torch_flags(True):
        raise RuntimeError("a run that breaks")
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_val_loss_picks_best_pt(data_root, tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    run = start_run(
        quick_config(train={"epochs": 3, "monitor": "val_loss"}, optim={"lr": 0.03}, deterministic=True),
        tmp_path,
        data_root,
    )
    assert torch.are_deterministic_algorithms_enabled() == before  # the run's flags did not leak
    rows, summary = run.metrics(), run.summary().to_dict()
    best = min(rows, key=lambda r: r["val_loss"])
    assert summary["monitor"] == "val_loss" and summary["best_epoch"] == best["epoch"]
    assert summary["best_value"] == best["val_loss"] and summary["test_acc_at_best"] == best["test_acc"]
    saved = checkpoint.load(run.best_path)
    assert (saved["epoch"], saved["metric"], saved["value"]) == (best["epoch"], "val_loss", best["val_loss"])
    assert checkpoint.load(run.last_path)["policy"] == {
        "monitor": "val_loss",
        "mode": "min",
        "best_value": best["val_loss"],
        "best_epoch": best["epoch"],
    }
    assert "best validation loss (epoch" in (run.path / "report.html").read_text()


def test_a_metric_the_task_does_not_record_is_refused_when_the_config_is_read():
    with pytest.raises(
        CnnlabError,
        match="train.monitor val_iou: task classify does not record val_iou; choose one of val_loss, val_acc",
    ):
        quick_config(train={"monitor": "val_iou"})


def stop_after_epoch_1(row):
    if row["epoch"] == 1:
        raise KeyboardInterrupt


def test_last_pt_of_before_the_policy_resumes_like_an_uninterrupted_run(data_root, tmp_path):
    cfg = quick_config(train={"epochs": 2}, deterministic=True)
    with pytest.raises(KeyboardInterrupt):
        start_run(cfg, tmp_path / "stopped", data_root, Progress(epoch_end=stop_after_epoch_1))
    run = RunFolder(next((tmp_path / "stopped" / "test").iterdir()))
    assert run.summary().to_dict()["status"] == "stopped" and run.summary().to_dict()["epochs_done"] == 1
    old = checkpoint.load(run.last_path)  # written the way it was before: best_epoch and best_value inside `state`
    policy = old.pop("policy")
    old["state"].update(best_epoch=policy["best_epoch"], best_value=policy["best_value"])
    checkpoint.save(run.last_path, **old)
    resumed = resume_run(run.path, data_root)
    straight = start_run(cfg, tmp_path / "straight", data_root)
    assert resumed.summary().to_dict()["status"] == "completed"
    assert without_timing(resumed.metrics()) == without_timing(straight.metrics())
    assert resumed.summary().to_dict()["best_epoch"] == straight.summary().to_dict()["best_epoch"]
    assert checkpoint.load(resumed.last_path)["policy"] == checkpoint.load(straight.last_path)["policy"]


def test_a_pruned_run_is_recorded_and_reported_by_the_runner(data_root, tmp_path):
    def prune(row):
        raise Pruned()

    run = start_run(quick_config(train={"epochs": 3}), tmp_path, data_root, Progress(epoch_end=prune))
    summary = run.summary().to_dict()
    assert (summary["status"], summary["pruned_at_epoch"], summary["epochs_done"]) == ("pruned", 1, 1)
    assert "pruned" in (run.path / "report.html").read_text()


def test_run_report_draws_every_metric_family(tmp_path):
    """A segmentation run's folder (metrics written here by hand):
    IoU and mean IoU get curves like loss and accuracy."""
    cfg = quick_config()
    run = RunFolder.create_at(tmp_path / "seg", cfg)
    rows = [
        {
            "epoch": e,
            **{metrics.split_key(s, m): 0.1 * e for s in metrics.SPLITS for m in metrics.SPLIT_METRICS},
            "lr": 0.01,
            "seconds": 2.0,
            "images_per_s": 100.0,
        }
        for e in (1, 2)
    ]
    run.write_metrics(rows)
    run.write_summary(
        RunSummary.from_dict(
            {
                "name": "seg",
                "status": "completed",
                "error": None,
                "monitor": "val_iou",
                "best_epoch": 2,
                "best_value": 0.2,
                "final": rows[-1],
                "test_iou_at_best": 0.2,
                "test_acc_at_best": 0.2,
                "epochs_done": 2,
                "epochs": 2,
                "wall_seconds": 4.0,
                "device": "cpu",
                "threads": 1,
                "seed": 0,
                "params": 0,
                "initial_loss": None,
                "expected_initial_loss": 0.69,
                "initial_loss_ok": None,
                "task": "segment",
                "classes": ["bg", "person"],
                "data": {"source": "here", "train": 1, "val": 1, "test": 1},
                "torch": torch.__version__,
            },
            run.summary_path,
        )
    )
    html = write_run_report(run.path)["html"].read_text()
    assert sorted(p.name for p in run.figures.glob("*.png")) == ["acc.png", "iou.png", "loss.png", "miou.png"]
    assert html.count("data:image/svg+xml;base64,") == 4  # the curves as vector figures
    for text in (
        "training mean IoU",
        "test IoU at best validation IoU",
        "best validation IoU (epoch 2)",
        "epoch time (s)",
    ):
        assert text in html


def test_progress_hears_the_running_loss_every_20_steps(data_root, tmp_path):
    """40 equal batches: the loss is told after steps 20 and 40 (the mean of the 20 steps before), None otherwise."""
    heard = []
    run = start_run(quick_config(train={"batch_size": 12}), tmp_path, data_root, Progress(step=heard.append))
    assert len(heard) == 40 and [i for i, loss in enumerate(heard) if loss is not None] == [19, 39]
    assert (heard[19] + heard[39]) / 2 == pytest.approx(run.metrics()[0]["train_loss"], rel=1e-5)


def test_label_smoothing_stays_out_of_the_evaluated_loss(data_root, monkeypatch, tmp_path):
    """Validation and test report plain cross-entropy; the training loss keeps smoothing, and its curve says so."""
    from torch.nn import functional as F

    from cnnlab.engine.run_setup import build_run
    from cnnlab.engine.evaluate import evaluate
    from cnnlab.engine.restore import predict
    from cnnlab.report import run_blocks
    from cnnlab.viz.curves import draw_metric

    built = build_run(quick_config(train={"label_smoothing": 0.3}), data_root)
    outputs = predict(built.model.eval(), built.data.val)
    targets = torch.cat([y for _, y in built.data.val.batches()]).cpu()
    assert evaluate(built, built.data.val)["loss"] == pytest.approx(F.cross_entropy(outputs, targets).item(), rel=1e-4)
    assert built.task.loss(outputs, targets).item() != pytest.approx(F.cross_entropy(outputs, targets).item(), rel=1e-4)
    rows = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.1}]
    legend = draw_metric(rows, "loss", notes={"train": "with label smoothing 0.3"}).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["training (with label smoothing 0.3)", "validation"]
    run = RunFolder.create_at(tmp_path / "smooth", quick_config(train={"label_smoothing": 0.3}))
    assert run_blocks.curve_notes(run, "loss") == {"train": "with label smoothing 0.3"}
    assert run_blocks.curve_notes(run, "acc") == {}
