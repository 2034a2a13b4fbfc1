"""compare.json: runs grouped into variants, each compared metric's statistics over seeds, and the pairwise
tests with their verdicts in words. `cnnlab compare` and a sweep's report write it; `--format json` prints it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cnnlab.atomic import write_json
from cnnlab.records.base import Provenance, read_json, validated


@dataclass
class Stats:
    """n, mean, sample standard deviation (n - 1), min, max and the t-based 95% interval of the mean."""

    n: int
    mean: Optional[float] = None
    std: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    ci95: Optional[list[float]] = None


@dataclass
class VariantStats:
    name: str
    config: dict[str, Any]  # the grouping keys and their values
    runs: list[str]
    seeds: list[Any]
    values: list[float]  # one per run, of the comparison's stat
    final: Stats  # of the last epoch
    best: Stats  # at the epoch of the best checkpoint


@dataclass
class PairTest:
    """a - b as a z-score (its standard error from each variant's spread) with the test that fits the sample size
    and only that test's p and interval; Holm's adjustment, and the verdict in words."""

    a: str
    b: str
    diff: Optional[float]
    t: Optional[float] = None
    df: Optional[float] = None
    p_value: Optional[float] = None
    z: Optional[float] = None
    test: Optional[str] = None  # how p was found: 'welch_t' (fewer than 30 runs a variant) or 'normal'
    ci95_diff: Optional[list[float]] = None
    effect_size: Optional[float] = None  # Cohen's d with the pooled standard deviation
    significant: Optional[bool] = None  # p < alpha, before Holm's correction
    seeds_needed: Optional[int] = None
    p_holm: Optional[float] = None
    significant_holm: Optional[bool] = None
    words: str = ""


@dataclass
class MetricComparison:
    """One compared quantity: `metric` at the last epoch (stat 'final') or at the best checkpoint ('best')."""

    metric: str
    stat: str
    source: str  # 'epochs' (metrics.jsonl) or 'summary' (one number of summary.json per run)
    variants: list[VariantStats]
    tests: list[PairTest] = field(default_factory=list)
    note: Optional[str] = None
    warnings: list[str] = field(default_factory=list)

    def of(self, variant: VariantStats) -> Stats:
        return variant.best if self.stat == "best" else variant.final


@dataclass
class Comparison:
    alpha: float
    columns: list[MetricComparison]
    task: Optional[str] = None
    monitor: Optional[str] = None  # the validation metric the runs' best.pt follows (train.monitor)
    skipped: list[dict[str, str]] = field(default_factory=list)  # runs that did not complete: run, status
    provenance: Provenance = field(default_factory=Provenance.now)

    @property
    def headline(self) -> MetricComparison:
        """The column a sweep is judged by: the runs' monitored metric at the last epoch where compared, else the
        first column."""
        return next((c for c in self.columns if (c.metric, c.stat) == (self.monitor, "final")), self.columns[0])

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.columns[0].variants] if self.columns else []

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, path: Path) -> "Comparison":
        return validated(cls, read_json(path), path)

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())
