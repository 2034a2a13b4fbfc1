"""Typed records: summary.json, metrics.jsonl, compare.json and a count each read through one checked reader.
A run folder written by cnnlab at 55dd85f (tests/data/run-55dd85f, before records were versioned) still reads
and reports; a record of the wrong shape is named with its key, never a traceback."""

import json
import shutil
from pathlib import Path

import pytest

from cnnlab.records import Counts, RecordError, RunSummary
from cnnlab.runfolder import DamagedRecord, RunFolder
from cnnlab.version import version

OLD_RUN = Path(__file__).parent / "data" / "run-55dd85f"


def test_a_run_folder_of_55dd85f_reads_whole():
    raw = json.loads((OLD_RUN / "summary.json").read_text())
    summary = RunSummary.read(OLD_RUN / "summary.json")
    assert summary.provenance.schema == 0 and summary.provenance.cnnlab_version is None  # not versioned then
    assert summary.at("test_acc") == raw["test_acc_at_best"] and summary.final == raw["final"]
    assert summary.look_inside == raw["look_inside"] and summary.extra == {}  # every key has its field
    again = summary.to_dict()
    assert {k: again[k] for k in raw} == raw  # nothing lost or changed on the way through
    assert RunFolder(OLD_RUN).metrics()[-1]["epoch"] == 2


def test_a_run_folder_of_55dd85f_reports(tmp_path):
    from cnnlab.report.run_report import write_run_report

    old = tmp_path / "run"
    shutil.copytree(OLD_RUN, old)
    html = write_run_report(old, formats=("html", "md"))["html"].read_text()
    summary = RunSummary.read(old / "summary.json")
    assert f"{summary.at('test_acc'):.4f}" in html and "Accuracy per class" in html
    assert f"Made by cnnlab {version()}" in html


def test_a_new_summary_round_trips_with_its_provenance():
    s = RunSummary(name="x", status="completed", at_best={"test_acc": 0.5}, final={"epoch": 1, "val_acc": 0.4})
    d = s.to_dict()
    assert d["test_acc_at_best"] == 0.5 and d["schema"] == 0  # a record built by hand says it is unversioned
    assert RunSummary.from_dict(d, Path("x")) == s
    assert s.updated(stopped_by="SIGTERM", test_iou_at_best=0.3).at("test_iou") == 0.3


@pytest.mark.parametrize(
    "change, named",
    [
        ({"final": [1, 2]}, "final"),
        ({"status": "done"}, "status: 'done' is not one of running, completed"),
        ({"best_epoch": "one"}, "best_epoch"),
        ({"classes": "abc"}, "classes"),
    ],
)
def test_a_summary_of_the_wrong_shape_is_named_by_its_key(tmp_path, change, named):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    raw = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**raw, **change}))
    with pytest.raises(DamagedRecord, match=named) as caught:
        RunFolder(run).summary()
    assert "cnnlab resume" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "line, named",
    [
        ('{"epoch": "one", "val_acc": 0.5}', "line 3: epoch is not a number"),
        ('{"epoch": 3, "val_acc": "high"}', "line 3: val_acc is not a number"),
        ("[1, 2]", "line 3 is not a JSON object"),
    ],
)
def test_metrics_of_the_wrong_shape_are_named_by_line(tmp_path, line, named):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
    with pytest.raises(DamagedRecord, match=named):
        RunFolder(run).metrics()


def test_a_count_round_trips_and_names_its_version(tmp_path):
    from cnnlab.analysis.network_summary import Options, counts_record, subject_and_input, summarise

    subject, shape, given = subject_and_input("simplenn", [], None, False, None)
    counts = counts_record(summarise(subject, shape, Options(given=given, measure=False)))
    assert counts.provenance.cnnlab_version == version()
    assert counts.total["params"] == sum(p.numel() for p in subject.build(shape).parameters())
    assert counts.layers[0]["name"] == "conv1"
    counts.write(tmp_path / "count.json")
    assert Counts.read(tmp_path / "count.json") == counts
    (tmp_path / "bad.json").write_text(json.dumps({**counts.to_dict(), "layers": "none"}))
    with pytest.raises(RecordError, match="layers"):
        Counts.read(tmp_path / "bad.json")
