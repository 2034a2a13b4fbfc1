"""Statistics over seeds against values computed independently here (scipy directly, hand formulas,
Cohen's power tables), and the comparison's grouping and words."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sp

from cnnlab.errors import CnnlabError
from cnnlab.sweep import stats
from cnnlab.config import flatten
from cnnlab.records import RunSummary, Stats
from cnnlab.sweep.collect import Run, differing_keys, group
from cnnlab.sweep.compare import compare

A = [0.812, 0.797, 0.825]
B = [0.781, 0.776, 0.803, 0.790]


def test_describe_against_hand_formulas_and_scipy():
    d = stats.describe(A)
    mean = sum(A) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in A) / 2)
    assert d["n"] == 3 and d["mean"] == pytest.approx(mean) and d["std"] == pytest.approx(std)
    assert (d["min"], d["max"]) == (0.797, 0.825)
    lo, hi = sp.t.interval(0.95, 2, loc=mean, scale=std / math.sqrt(3))
    assert d["ci95"] == pytest.approx([lo, hi])
    assert d["ci95"][1] - mean == pytest.approx(4.302652729911275 * std / math.sqrt(3))  # t(0.975, 2) from a table
    one = stats.describe([0.5])
    assert one["std"] is None and one["ci95"] is None and one["mean"] == 0.5


def test_welch_against_scipy_and_hand_formulas():
    w = stats.welch(A, B)
    ref = sp.ttest_ind(A, B, equal_var=False)
    assert w["t"] == pytest.approx(ref.statistic) and w["p_value"] == pytest.approx(ref.pvalue)
    va, vb = np.var(A, ddof=1) / 3, np.var(B, ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert w["df"] == pytest.approx(df) and w["diff"] == pytest.approx(np.mean(A) - np.mean(B))
    assert w["z"] == pytest.approx(w["diff"] / math.sqrt(va + vb)) and w["test"] == "welch_t"
    half = sp.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert w["ci95_diff"] == pytest.approx([w["diff"] - half, w["diff"] + half])
    pooled = math.sqrt((2 * np.var(A, ddof=1) + 3 * np.var(B, ddof=1)) / 5)
    assert w["effect_size"] == pytest.approx(abs(w["diff"]) / pooled)


def test_welch_is_undefined_without_two_runs_or_without_spread():
    assert stats.welch([0.8], B)["p_value"] is None
    flat = stats.welch([0.8, 0.8], [0.7, 0.7])
    assert flat["p_value"] is None and flat["diff"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "d, alpha, n", [(0.5, 0.05, 64), (0.8, 0.05, 26), (1.0, 0.05, 17), (0.5, 0.01, 96), (0.2, 0.05, 394)]
)
def test_seeds_needed_matches_power_tables(d, alpha, n):
    """Per-group n for 80% power, two-sided two-sample t-test (Cohen 1988, Table 2.4.1; G*Power gives 394 for d=0.2)."""
    assert stats.seeds_needed(d, alpha) == n
    assert stats.power(n, d, alpha) >= 0.8 > stats.power(n - 1, d, alpha)


def test_power_by_simulation():
    """The noncentral-t power at n=10, d=1 against a Monte Carlo of the same t-test."""
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 10))
    b = rng.normal(1.0, 1.0, size=(20000, 10))
    simulated = np.mean(sp.ttest_ind(a, b, axis=1).pvalue < 0.05)
    assert stats.power(10, 1.0, 0.05) == pytest.approx(simulated, abs=0.015)


def test_seeds_needed_edges():
    assert stats.seeds_needed(None, 0.05) is None and stats.seeds_needed(0.0, 0.05) is None
    assert stats.seeds_needed(1e-3, 0.05) == stats.MAX_SEEDS + 1


def test_holm_by_hand():
    # sorted p: 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.03, 0.06, max(0.06, 0.04) = 0.06
    adjusted = stats.holm([0.04, None, 0.01, 0.03])
    assert adjusted[1] is None and adjusted[0] == pytest.approx(0.06) and adjusted[2] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.06)
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]


def fake_run(path: str, seed: int, finals: list[float], summary: dict = {}, **config) -> Run:
    raw = {"name": "exp", "seed": seed, "optim": {"name": "sgd", "lr": 0.01}, "model": {"bn": True}}
    for key, value in config.items():
        section, name = key.split("__")
        raw[section] = {**raw[section], name: value}
    history = [{"epoch": e + 1, "val_acc": v, "val_loss": 1 - v, "train_loss": 1.0} for e, v in enumerate(finals)]
    best = max(range(len(finals)), key=lambda i: finals[i]) + 1
    record = RunSummary.from_dict({"name": "exp", "status": "completed", "best_epoch": best, **summary}, Path(path))
    return Run(Path(path), flatten(raw), record, history)


def test_flatten_and_differing_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    runs = [fake_run("r1", 0, [0.5], optim__name="adam"), fake_run("r2", 1, [0.6], optim__name="sgd")]
    assert differing_keys(runs) == ["optim.name"]  # the seed is what a variant repeats over


def test_group_by_default_by_key_and_refuses_unknown_keys():
    runs = [
        fake_run(f"r{i}", s, [0.5 + 0.01 * i], optim__name=o, model__bn=bn)
        for i, (o, bn, s) in enumerate([(o, bn, s) for o in ("sgd", "adam") for bn in (True, False) for s in (0, 1)])
    ]
    assert [v.name for v in group(runs)] == [
        "optim.name=adam model.bn=false",
        "optim.name=adam model.bn=true",
        "optim.name=sgd model.bn=false",
        "optim.name=sgd model.bn=true",
    ]
    by_bn = group(runs, ["model.bn"], {"model.bn": [True, False]})
    assert [(v.name, len(v.runs)) for v in by_bn] == [("model.bn=true", 4), ("model.bn=false", 4)]
    with pytest.raises(CnnlabError, match="--by model.bnn: no run has this config key; keys that differ"):
        group(runs, ["model.bnn"])


def test_compare_final_and_best_and_words():
    a = [fake_run(f"a{s}", s, [v - 0.05, v], optim__name="adam") for s, v in enumerate([0.90, 0.91, 0.92])]
    b = [fake_run(f"b{s}", s, [v, v - 0.02], optim__name="sgd") for s, v in enumerate([0.80, 0.81, 0.83])]
    c = [fake_run(f"c{s}", s, [v, v], optim__name="adamw") for s, v in enumerate([0.905, 0.93, 0.89])]
    result = compare(group(a + b + c, ["optim.name"], {"optim.name": ["adam", "sgd", "adamw"]}), "val_acc")
    va, vb, vc = result.variants
    assert (va.name, len(va.runs), va.runs) == ("optim.name=adam", 3, ["a0", "a1", "a2"])
    assert va.final.mean == pytest.approx(0.91) and va.final == Stats(**stats.describe([0.90, 0.91, 0.92]))
    assert vb.best.mean == pytest.approx(np.mean([0.80, 0.81, 0.83]))  # best epoch (by validation) is epoch 1
    assert vb.final.mean == pytest.approx(np.mean([0.78, 0.79, 0.81]))
    ab, ac, bc = result.tests
    assert (ab.a, ab.b) == ("optim.name=adam", "optim.name=sgd") and ab.significant
    assert ab.p_value == pytest.approx(sp.ttest_ind([0.90, 0.91, 0.92], [0.78, 0.79, 0.81], equal_var=False).pvalue)
    assert ab.significant_holm and "higher by 0.1167" in ab.words
    assert ab.words.endswith("significant at the 0.05 level after Holm's correction")
    assert not ac.significant and ac.seeds_needed == stats.seeds_needed(ac.effect_size, 0.05)
    assert f"not significant with 3 seeds; about {ac.seeds_needed} seeds per variant would be needed" in ac.words
    p = sorted(t.p_value for t in result.tests)
    by_hand = [min(1, 3 * p[0]), min(1, max(3 * p[0], 2 * p[1])), min(1, max(3 * p[0], 2 * p[1], p[2]))]
    assert sorted(t.p_holm for t in result.tests) == pytest.approx(by_hand)
    loss = compare(group(a + b, ["optim.name"]), "val_loss", alpha=0.01, stat="best")
    assert loss.stat == "best"


def test_compare_refuses_bad_metric_and_says_when_nothing_can_be_tested():
    runs = [fake_run("a", 0, [0.5], optim__name="adam"), fake_run("b", 0, [0.6], optim__name="sgd")]
    with pytest.raises(CnnlabError, match=r"--metric val_ac: the runs record no such metric \(did you mean val_acc"):
        compare(group(runs), "val_ac")
    result = compare(group(runs), "val_acc")
    assert result.tests == [] and "single run" in result.note
    two = [
        fake_run("a", 0, [0.5], optim__name="adam"),
        fake_run("a1", 1, [0.5], optim__name="adam"),
        fake_run("b", 0, [0.6], optim__name="sgd"),
    ]
    result = compare(group(two), "val_acc")
    (test,) = result.tests
    assert test.p_value is None and "needs at least 2 runs" in test.words
    assert result.warnings == []
    same_seed = [fake_run("a", 0, [0.5], optim__name="adam"), fake_run("a1", 0, [0.5], optim__name="adam")]
    (warning,) = compare(group(same_seed), "val_acc").warnings
    assert "2 runs but only 1 distinct seed;" in warning


def variants_of(**values: list[float]):
    runs = [fake_run(f"{name}{s}", s, [v], optim__name=name) for name, vs in values.items() for s, v in enumerate(vs)]
    return group(runs, ["optim.name"], {"optim.name": list(values)})


def test_a_win_only_before_holm_does_not_read_like_one():
    """p = 0.03 alone, 0.09 after Holm's correction for 3 comparisons: the sentence leads with what holds."""
    result = compare(variants_of(x=[0.50, 0.52, 0.54], y=[0.552, 0.572, 0.592], z=[0.40, 0.55, 0.70]), "val_acc")
    xy = result.tests[0]
    assert xy.significant and not xy.significant_holm and 0.01 < xy.p_value < 0.05 < xy.p_holm
    assert ": not significant after Holm's correction for 3 comparisons (adjusted p = 0.1);" in xy.words
    assert xy.words.endswith("it would be significant at the 0.05 level only as the sole comparison")
    assert "significant at the 0.05 level" not in xy.words.split(";")[0]


@pytest.mark.parametrize(
    "m, words",
    [
        (0.22, "not significant with 3 seeds; the difference is within the noise of these runs"),
        (
            0.20,
            "not significant with 3 seeds; "
            "about 4 seeds per variant would be needed to detect a difference of this size",
        ),
    ],
)
def test_seeds_needed_is_only_asked_for_when_above_the_seeds_run(m, words):
    """A large effect that Welch's t (df about 2 with one spread-out variant) does not find: when the power estimate
    asks for no more seeds than were run, saying "about 3 seeds would be needed" to a user who ran 3 contradicts."""
    result = compare(variants_of(b=[0.5 + m - 0.1, 0.5 + m, 0.5 + m + 0.1], a=[0.500, 0.501, 0.502]), "val_acc")
    (test,) = result.tests
    assert test.significant is False and test.seeds_needed == (3 if m == 0.22 else 4)
    assert words in test.words and ("would usually show with 3 seeds" in test.words) == (m == 0.22)


def test_terminal_table_shows_the_z_score_and_the_holm_verdict():
    from cnnlab.document import to_text
    from cnnlab.records import Comparison
    from cnnlab.report.compare_blocks import comparison_blocks

    variants = variants_of(x=[0.50, 0.52, 0.54], y=[0.552, 0.572, 0.592], z=[0.40, 0.55, 0.70])
    result = compare(variants, "val_acc")
    out = " ".join(to_text(comparison_blocks(Comparison(0.05, [result])), width=400).split())  # words wrap
    assert "z" in out.split() and "p (Holm)" in out and "95% CI of a − b" in out and "p (z)" not in out
    for test in result.tests:
        assert f"{test.z:.2f}" in out and f"Welch's t, df {test.df:.1f}" in out
    assert "optim.name=x is lower by 0.0520" in out
    assert "not significant after Holm's correction" in out


def test_compare_any_number_of_summary_json_by_its_dotted_key():
    def sparse(share: float, zeros: int) -> dict:
        return {
            "sparsity": {
                "threshold": 0.001,
                "layers": [{"name": "conv1", "share_below": share}],
                "total": {"share_below": share, "zeros": zeros},
            },
            "peak": {"key": "cpu", "gflops": 90.0},
        }

    l1 = [fake_run(f"l1-{s}", s, [0.8, 0.81], sparse(v, 0), optim__l1=0.0005) for s, v in enumerate([0.50, 0.52, 0.55])]
    l2 = [fake_run(f"l2-{s}", s, [0.8, 0.82], sparse(v, 0), optim__l1=0.0) for s, v in enumerate([0.02, 0.017, 0.019])]
    variants = group(l1 + l2, ["optim.l1"], {"optim.l1": [0.0005, 0.0]})
    result = compare(variants, "sparsity.total.share_below")
    va, vb = result.variants
    assert result.source == "summary" and "number of summary.json" in result.note
    assert va.values == [0.50, 0.52, 0.55] and va.final == va.best == Stats(**stats.describe([0.50, 0.52, 0.55]))
    (test,) = result.tests
    assert test.p_value == pytest.approx(sp.ttest_ind([0.50, 0.52, 0.55], [0.02, 0.017, 0.019], equal_var=False).pvalue)
    assert compare(variants, "val_acc").source == "epochs"  # per-epoch metrics as before
    assert compare(variants, "peak.gflops").variants[0].final.mean == 90.0
    with pytest.raises(
        CnnlabError,
        match="--metric sparsity is a section of summary.json, not one number; choose one of: "
        "sparsity.threshold, sparsity.total.share_below, sparsity.total.zeros",
    ):
        compare(variants, "sparsity")
    with pytest.raises(CnnlabError, match="or a number of summary.json by its dotted key"):
        compare(variants, "sparsity.layers")  # a list: no number to compare


def test_the_z_score_is_tested_by_what_fits_the_sample_size():
    """Two seeds: z against Welch's t (a normal p would be far too small) and no second p-value anywhere; from
    LARGE_SAMPLE seeds: z against the normal distribution."""
    few = stats.welch([0.80, 0.81], [0.70, 0.72])
    assert few["test"] == "welch_t" and "z_p_value" not in few
    assert few["p_value"] == pytest.approx(sp.ttest_ind([0.80, 0.81], [0.70, 0.72], equal_var=False).pvalue)
    assert few["p_value"] > 10 * 2 * sp.norm.sf(abs(few["z"]))
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.02, stats.LARGE_SAMPLE), rng.normal(0.79, 0.02, stats.LARGE_SAMPLE)
    many = stats.welch(a, b)
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    assert many["test"] == "normal" and many["z"] == pytest.approx((a.mean() - b.mean()) / se)
    assert many["p_value"] == pytest.approx(2 * sp.norm.sf(abs(many["z"])))
    assert many["ci95_diff"] == pytest.approx([many["diff"] - 1.959964 * se, many["diff"] + 1.959964 * se])
    assert stats.test_name(few["test"], few["df"]) == f"Welch's t, df {few['df']:.1f}"
    assert stats.test_name(many["test"], many["df"]) == "normal"


def test_sweep_report_shows_the_z_score_with_its_test_and_no_other_p(tmp_path):
    from cnnlab.records import Comparison
    from cnnlab.report.sweep_report import write_sweep_report
    from cnnlab.sweep.compare import Analysis

    variants = variants_of(x=[0.50, 0.52, 0.54], y=[0.552, 0.572, 0.592])
    result = compare(variants, "val_acc")
    (test,) = result.tests
    runs = [r for v in variants for r in v.runs]
    write_sweep_report(Analysis([], runs, [], variants, Comparison(0.05, [result]), None), tmp_path)
    for page in ("report.html", "report.md"):
        text = html.unescape((tmp_path / page).read_text())
        assert f"Welch's t, df {test.df:.1f}" in text and f"{test.z:.2f}" in text and "p (z)" not in text


def test_segmentation_is_compared_and_logged_by_its_own_metric():
    """A segment run keeps best.pt by val_iou: compare defaults to it, the sweep's lines name it, an old run
    folder without best_epoch finds its best epoch by it, and its report's table says it."""
    from types import SimpleNamespace

    from cnnlab import metrics
    from cnnlab.report.run_blocks import final_rows
    from cnnlab.sweep.compare import default_columns
    from cnnlab.sweep.worker import Worker

    history = [{"epoch": 1, "val_acc": 0.9, "val_iou": 0.2}, {"epoch": 2, "val_acc": 0.8, "val_iou": 0.5}]
    seg = [
        Run(
            Path(f"s{i}"),
            flatten({"task": "segment", "seed": i}),
            RunSummary(name="s", status="completed", task="segment"),
            history,
        )
        for i in (0, 1)
    ]
    assert seg[0].monitor == "val_iou" and seg[0].value("val_acc", "best") == 0.8
    assert ("val_iou", "final") in default_columns("segment") and ("test_iou", "best") in default_columns("segment")
    assert variants_of(x=[0.5, 0.6])[0].runs[0].monitor == "val_acc"
    cfg = SimpleNamespace(task="segment", train=SimpleNamespace(monitor=None))
    assert metrics.best_words(Worker.watched(SimpleNamespace(study=None), cfg)) == "best validation IoU"
    s = RunSummary(name="s", status="completed", task="segment", final=history[-1], best_epoch=2, best_value=0.5)
    table = {name: str(value) for name, value in final_rows(s)}
    assert table["best validation IoU (epoch 2)"] == "0.5000"
